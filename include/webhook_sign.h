/*
 * webhook_sign: Standard Webhooks 1.0 signatures. Owns the secret format
 * ("whsec_" + base64 of 24 random bytes) and the signature of a message:
 * "v1," + base64(HMAC-SHA256(base64-decoded secret, "{id}.{timestamp}.{body}")).
 * HMAC, base64 and the random bytes are OpenSSL's libcrypto. Pure apart from
 * reading the system's random source in webhook_secret_new.
 */
#ifndef CRM_WEBHOOK_SIGN_H
#define CRM_WEBHOOK_SIGN_H

#include <stdbool.h>
#include <stddef.h>

#define WEBHOOK_SECRET_PREFIX "whsec_"
#define WEBHOOK_SECRET_BYTES 24
/* "whsec_" + base64 of 24 bytes (32 characters) + NUL */
#define WEBHOOK_SECRET_LEN (6 + 32)
/* "v1," + base64 of 32 bytes (44 characters) + NUL */
#define WEBHOOK_SIGNATURE_LEN (3 + 44)

/* A new secret; false when no random bytes could be had. */
bool webhook_secret_new(char out[WEBHOOK_SECRET_LEN + 1]);

/* True when secret is "whsec_" + base64 of 16 to 64 bytes. */
bool webhook_secret_valid(const char *secret);

/* The webhook-signature header value for a message; false when the secret
 * is not valid. */
bool webhook_sign(const char *secret, const char *msg_id, long long timestamp, const char *body,
                  size_t body_len, char out[WEBHOOK_SIGNATURE_LEN + 1]);

#endif
