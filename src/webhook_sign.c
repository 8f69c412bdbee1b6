/*
 * webhook_sign: the Standard Webhooks signature with libcrypto's one-shot
 * HMAC and its base64 blocks (EVP_EncodeBlock / EVP_DecodeBlock). The signed
 * content is built in one buffer: id, '.', timestamp, '.', body.
 */
#include "webhook_sign.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool webhook_secret_new(char out[WEBHOOK_SECRET_LEN + 1])
{
    unsigned char raw[WEBHOOK_SECRET_BYTES];
    if (RAND_bytes(raw, (int)sizeof(raw)) != 1)
        return false;
    memcpy(out, WEBHOOK_SECRET_PREFIX, 6);
    EVP_EncodeBlock((unsigned char *)out + 6, raw, (int)sizeof(raw));
    out[WEBHOOK_SECRET_LEN] = '\0';
    return true;
}

/* The secret's key bytes; returns their count, or -1 when it is no secret. */
static int secret_key(const char *secret, unsigned char *key, size_t cap)
{
    const char *b64;
    size_t len, pad = 0;
    int n;
    if (secret == NULL || strncmp(secret, WEBHOOK_SECRET_PREFIX, 6) != 0)
        return -1;
    b64 = secret + 6;
    len = strlen(b64);
    if (len == 0 || len % 4 != 0 || len / 4 * 3 > cap ||
        strspn(b64, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=") != len)
        return -1;
    while (pad < 2 && b64[len - 1 - pad] == '=')
        pad++;
    if (memchr(b64, '=', len - pad) != NULL)
        return -1;
    n = EVP_DecodeBlock(key, (const unsigned char *)b64, (int)len);
    if (n < 0)
        return -1;
    return n - (int)pad; /* EVP_DecodeBlock counts the padding as zero bytes */
}

bool webhook_secret_valid(const char *secret)
{
    unsigned char key[96];
    int n = secret_key(secret, key, sizeof(key));
    return n >= 16 && n <= 64;
}

bool webhook_sign(const char *secret, const char *msg_id, long long timestamp, const char *body,
                  size_t body_len, char out[WEBHOOK_SIGNATURE_LEN + 1])
{
    unsigned char key[96], mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    char head[160];
    int key_len = secret_key(secret, key, sizeof(key));
    int head_len;
    unsigned char *content;
    bool ok;
    if (key_len <= 0)
        return false;
    head_len = snprintf(head, sizeof(head), "%s.%lld.", msg_id, timestamp);
    if (head_len < 0 || (size_t)head_len >= sizeof(head))
        return false;
    content = malloc((size_t)head_len + body_len + 1);
    if (content == NULL)
        return false;
    memcpy(content, head, (size_t)head_len);
    memcpy(content + head_len, body, body_len);
    ok = HMAC(EVP_sha256(), key, key_len, content, (size_t)head_len + body_len, mac, &mac_len) !=
         NULL && mac_len == 32;
    free(content);
    if (!ok)
        return false;
    memcpy(out, "v1,", 3);
    EVP_EncodeBlock((unsigned char *)out + 3, mac, (int)mac_len);
    out[WEBHOOK_SIGNATURE_LEN] = '\0';
    return true;
}
