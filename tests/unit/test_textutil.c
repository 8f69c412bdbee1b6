/*
 * Unit tests for textutil: UTF-8 validation and truncation, UUID parsing and
 * generation, calendar dates, RFC 3339 timestamps and base64url.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "textutil.h"

#define UTF8_OK(lit) ck_assert_msg(utf8_valid(lit, sizeof(lit) - 1), "expected valid: %s", #lit)
#define UTF8_BAD(lit) ck_assert_msg(!utf8_valid(lit, sizeof(lit) - 1), "expected invalid: %s", #lit)

/* ---- utf8_valid ---------------------------------------------------------- */

START_TEST(test_utf8_ascii)
{
    UTF8_OK("");
    UTF8_OK("hello, world");
    UTF8_OK("\x7f");
    ck_assert(utf8_valid("abc", 0));
}
END_TEST

START_TEST(test_utf8_multibyte_valid)
{
    UTF8_OK("\xc3\xa9");                 /* U+00E9 e acute, 2 bytes */
    UTF8_OK("\xc2\x80");                 /* U+0080, smallest 2-byte */
    UTF8_OK("\xdf\xbf");                 /* U+07FF, largest 2-byte */
    UTF8_OK("\xe0\xa0\x80");             /* U+0800, smallest 3-byte */
    UTF8_OK("\xe2\x82\xac");             /* U+20AC euro sign */
    UTF8_OK("\xed\x9f\xbf");             /* U+D7FF, just below surrogates */
    UTF8_OK("\xee\x80\x80");             /* U+E000, just above surrogates */
    UTF8_OK("\xef\xbf\xbf");             /* U+FFFF */
    UTF8_OK("\xf0\x90\x80\x80");         /* U+10000, smallest 4-byte */
    UTF8_OK("\xf0\x9f\x98\x80");         /* U+1F600 emoji */
    UTF8_OK("\xf4\x8f\xbf\xbf");         /* U+10FFFF, largest code point */
    UTF8_OK("caf\xc3\xa9 \xe2\x82\xac 5 \xf0\x9f\x98\x80!");
}
END_TEST

START_TEST(test_utf8_overlong)
{
    UTF8_BAD("\xc0\x80");         /* overlong NUL */
    UTF8_BAD("\xc1\xbf");         /* overlong U+007F */
    UTF8_BAD("\xe0\x80\x80");     /* overlong 3-byte */
    UTF8_BAD("\xe0\x9f\xbf");     /* overlong U+07FF */
    UTF8_BAD("\xf0\x80\x80\x80"); /* overlong 4-byte */
    UTF8_BAD("\xf0\x8f\xbf\xbf"); /* overlong U+FFFF */
}
END_TEST

START_TEST(test_utf8_surrogates)
{
    UTF8_BAD("\xed\xa0\x80"); /* U+D800 */
    UTF8_BAD("\xed\xbf\xbf"); /* U+DFFF */
    UTF8_BAD("a\xed\xb0\x80z");
}
END_TEST

START_TEST(test_utf8_truncated)
{
    UTF8_BAD("\xc3");
    UTF8_BAD("abc\xc3");
    UTF8_BAD("abc\xe2\x82");
    UTF8_BAD("abc\xf0\x9f\x98");
    /* The length argument is honoured: the same bytes cut short are invalid. */
    ck_assert(!utf8_valid("\xe2\x82\xac", 2));
    ck_assert(utf8_valid("\xe2\x82\xac", 3));
    ck_assert(utf8_valid("a\xe2\x82\xac", 1));
}
END_TEST

START_TEST(test_utf8_out_of_range)
{
    UTF8_BAD("\xf4\x90\x80\x80"); /* U+110000 */
    UTF8_BAD("\xf5\x80\x80\x80");
    UTF8_BAD("\xf7\xbf\xbf\xbf");
    UTF8_BAD("\xf8\x88\x80\x80\x80"); /* 5-byte form */
    UTF8_BAD("\xff");
    UTF8_BAD("\xfe");
}
END_TEST

START_TEST(test_utf8_bad_continuation)
{
    UTF8_BAD("\x80");             /* lone continuation byte */
    UTF8_BAD("a\xbf");
    UTF8_BAD("\xc3\x28");         /* second byte not a continuation */
    UTF8_BAD("\xe2\x28\xa1");
    UTF8_BAD("\xe2\x82\x28");
    UTF8_BAD("\xf0\x9f\x98\x28");
}
END_TEST

START_TEST(test_utf8_embedded_nul)
{
    const char buf[] = {'a', '\0', 'b'};
    ck_assert(!utf8_valid(buf, sizeof(buf)));
    ck_assert(!utf8_valid("\0", 1));
    ck_assert(utf8_valid(buf, 1));
}
END_TEST

/* ---- utf8_length / utf8_truncate ----------------------------------------- */

START_TEST(test_utf8_length)
{
    ck_assert_uint_eq(utf8_length(""), 0);
    ck_assert_uint_eq(utf8_length("abc"), 3);
    ck_assert_uint_eq(utf8_length("caf\xc3\xa9"), 4);
    ck_assert_uint_eq(utf8_length("\xe2\x82\xac\xf0\x9f\x98\x80"), 2);
}
END_TEST

START_TEST(test_utf8_truncate)
{
    char a[] = "abc\xc3";
    char b[] = "abc\xe2\x82";
    char c[] = "abc\xf0\x9f\x98";
    char d[] = "caf\xc3\xa9";
    char e[] = "";
    char f[] = "\xe2";
    char g[] = "ok\xf0\x9f\x98\x80";

    utf8_truncate(a);
    ck_assert_str_eq(a, "abc");
    utf8_truncate(b);
    ck_assert_str_eq(b, "abc");
    utf8_truncate(c);
    ck_assert_str_eq(c, "abc");
    utf8_truncate(d);
    ck_assert_str_eq(d, "caf\xc3\xa9"); /* already valid: unchanged */
    utf8_truncate(e);
    ck_assert_str_eq(e, "");
    utf8_truncate(f);
    ck_assert_str_eq(f, "");
    utf8_truncate(g);
    ck_assert_str_eq(g, "ok\xf0\x9f\x98\x80");
}
END_TEST

/* ---- uuid ---------------------------------------------------------------- */

START_TEST(test_uuid_canonical_lowercases)
{
    char out[UUID_TEXT_LEN + 1];
    ck_assert(uuid_canonical("123E4567-E89B-42D3-A456-426614174ABC", out));
    ck_assert_str_eq(out, "123e4567-e89b-42d3-a456-426614174abc");
    ck_assert(uuid_canonical("123e4567-e89b-42d3-a456-426614174abc", out));
    ck_assert_str_eq(out, "123e4567-e89b-42d3-a456-426614174abc");
    ck_assert(uuid_canonical("00000000-0000-0000-0000-000000000000", out));
    ck_assert_str_eq(out, "00000000-0000-0000-0000-000000000000");
    ck_assert(uuid_canonical("FfFfFfFf-fFfF-FFFF-ffff-FFFFFFFFFFFF", out));
    ck_assert_str_eq(out, "ffffffff-ffff-ffff-ffff-ffffffffffff");
}
END_TEST

static unsigned long long now_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (unsigned long long)now.tv_sec * 1000ull + (unsigned long long)now.tv_nsec / 1000000ull;
}

static int cmp_text(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

START_TEST(test_uuid_v7_rfc9562_vector)
{
    /* RFC 9562, appendix A.6: 2022-02-22 19:22:22 UTC (0x017F22E279B0 ms),
     * rand_a 0xCC3, rand_b 0x18C4DC0C0C07398F. */
    const unsigned char r[10] = {0x0C, 0xC3, 0x98, 0xC4, 0xDC, 0x0C, 0x0C, 0x07, 0x39, 0x8F};
    char out[UUID_TEXT_LEN + 1];
    uuid_v7_make(0x017F22E279B0u, r, out);
    ck_assert_str_eq(out, "017f22e2-79b0-7cc3-98c4-dc0c0c07398f");
}
END_TEST

START_TEST(test_uuid_new_v7_time_ordered)
{
    /* Version 7, RFC variant, the time field between the clock read before
     * and after, never decreasing from one id to the next, no two alike. */
    enum { N = 1000 };
    static char seen[N][UUID_TEXT_LEN + 1];
    unsigned long long before = now_ms(), after;
    for (int i = 0; i < N; i++)
        uuid_new_v7(seen[i]);
    after = now_ms();
    for (int i = 0; i < N; i++) {
        char canon[UUID_TEXT_LEN + 1], hex[13];
        ck_assert(uuid_canonical(seen[i], canon));
        ck_assert_str_eq(canon, seen[i]);
        ck_assert_int_eq(seen[i][14], '7');
        ck_assert(strchr("89ab", seen[i][19]) != NULL);
        memcpy(hex, seen[i], 8);
        memcpy(hex + 8, seen[i] + 9, 4);
        hex[12] = '\0';
        unsigned long long ms = strtoull(hex, NULL, 16);
        ck_assert_msg(ms >= before && ms <= after, "%s: %llx not in [%llx, %llx]", seen[i], ms, before, after);
        if (i > 0)
            ck_assert(memcmp(seen[i - 1], seen[i], 13) <= 0);
    }
    qsort(seen, N, sizeof(seen[0]), cmp_text);
    for (int i = 1; i < N; i++)
        ck_assert_str_ne(seen[i - 1], seen[i]);
}
END_TEST

START_TEST(test_uuid_new_is_random_v4)
{
    /* 1,000 UUIDs (several refills of the random pool): each canonical,
     * version 4, RFC 4122 variant, and no two alike. */
    enum { N = 1000 };
    static char seen[N][UUID_TEXT_LEN + 1];
    for (int i = 0; i < N; i++) {
        char canon[UUID_TEXT_LEN + 1];
        uuid_new(seen[i]);
        ck_assert(uuid_canonical(seen[i], canon));
        ck_assert_str_eq(canon, seen[i]);
        ck_assert_int_eq(seen[i][14], '4');
        ck_assert(strchr("89ab", seen[i][19]) != NULL);
    }
    /* Sorted, then neighbours compared: the pairwise loop took Check's 4 s
     * timeout on a loaded machine. */
    qsort(seen, N, sizeof(seen[0]), cmp_text);
    for (int i = 1; i < N; i++)
        ck_assert_str_ne(seen[i - 1], seen[i]);
}
END_TEST

START_TEST(test_uuid_canonical_rejects)
{
    char out[UUID_TEXT_LEN + 1];
    ck_assert(!uuid_canonical(NULL, out));
    ck_assert(!uuid_canonical("", out));
    /* wrong length */
    ck_assert(!uuid_canonical("123e4567-e89b-42d3-a456-426614174ab", out));
    ck_assert(!uuid_canonical("123e4567-e89b-42d3-a456-426614174abcd", out));
    ck_assert(!uuid_canonical("123e4567e89b42d3a456426614174abc", out));
    ck_assert(!uuid_canonical("{123e4567-e89b-42d3-a456-426614174abc}", out));
    /* right length, dashes in the wrong places */
    ck_assert(!uuid_canonical("123e4567e-89b-42d3-a456-426614174abc", out));
    ck_assert(!uuid_canonical("123e456-7e89b-42d3-a456-426614174abc", out));
    ck_assert(!uuid_canonical("123e4567-e89b-42d3-a4564-26614174abc", out));
    ck_assert(!uuid_canonical("123e4567-e89b-42d3-a456_426614174abc", out));
    ck_assert(!uuid_canonical("123e4567-e89b-42d3-a456-42661417-abc", out));
    /* non-hex */
    ck_assert(!uuid_canonical("123g4567-e89b-42d3-a456-426614174abc", out));
    ck_assert(!uuid_canonical("123e4567-e89b-42d3-a456-42661417 abc", out));
    ck_assert(!uuid_canonical("+23e4567-e89b-42d3-a456-426614174abc", out));
    ck_assert(!uuid_canonical("123e4567-e89b-42d3-a456-426614174ab\xc3", out));
}
END_TEST

static void assert_v4(const char *u)
{
    char canon[UUID_TEXT_LEN + 1];
    ck_assert_uint_eq(strlen(u), UUID_TEXT_LEN);
    ck_assert(uuid_canonical(u, canon));
    ck_assert_str_eq(canon, u); /* already lower-case canonical */
    ck_assert_int_eq(u[14], '4');
    ck_assert_msg(strchr("89ab", u[19]) != NULL, "variant nibble %c", u[19]);
}

START_TEST(test_uuid_new)
{
    char a[UUID_TEXT_LEN + 1], b[UUID_TEXT_LEN + 1];
    uuid_new(a);
    uuid_new(b);
    assert_v4(a);
    assert_v4(b);
    ck_assert_str_ne(a, b);
}
END_TEST

/* ---- date_valid ---------------------------------------------------------- */

START_TEST(test_date_valid)
{
    ck_assert(date_valid("2000-02-29", 1900, 2999)); /* divisible by 400 */
    ck_assert(!date_valid("1900-02-29", 1900, 2999)); /* divisible by 100 only */
    ck_assert(date_valid("2024-02-29", 1900, 2999));
    ck_assert(!date_valid("2023-02-29", 1900, 2999));
    ck_assert(date_valid("2023-02-28", 1900, 2999));
    ck_assert(!date_valid("2100-02-29", 1900, 2999));
    ck_assert(!date_valid("2024-13-01", 1900, 2999));
    ck_assert(!date_valid("2024-00-01", 1900, 2999));
    ck_assert(!date_valid("2024-01-00", 1900, 2999));
    ck_assert(!date_valid("2024-01-32", 1900, 2999));
    ck_assert(date_valid("2024-01-31", 1900, 2999));
    ck_assert(!date_valid("2024-04-31", 1900, 2999));
    ck_assert(date_valid("2024-12-31", 1900, 2999));
    ck_assert(!date_valid("1990-02-30", 1900, 2999));
}
END_TEST

START_TEST(test_date_format_and_range)
{
    ck_assert(!date_valid(NULL, 1900, 2999));
    ck_assert(!date_valid("", 1900, 2999));
    ck_assert(!date_valid("2024-1-01", 1900, 2999));
    ck_assert(!date_valid("2024-01-1", 1900, 2999));
    ck_assert(!date_valid("2024/01/01", 1900, 2999));
    ck_assert(!date_valid("2024-01-01T", 1900, 2999));
    ck_assert(!date_valid("2024-01-01 ", 1900, 2999));
    ck_assert(!date_valid("20a4-01-01", 1900, 2999));
    ck_assert(!date_valid("2024-0a-01", 1900, 2999));
    ck_assert(!date_valid("2024-01-0a", 1900, 2999));
    ck_assert(!date_valid("-024-01-01", 1900, 2999));
    ck_assert(date_valid("1900-01-01", 1900, 2999));
    ck_assert(!date_valid("1899-12-31", 1900, 2999));
    ck_assert(date_valid("2999-12-31", 1900, 2999));
    ck_assert(!date_valid("3000-01-01", 1900, 2999));
    ck_assert(date_valid("0001-01-01", 1, 9999));
}
END_TEST

/* ---- rfc3339_valid ------------------------------------------------------- */

START_TEST(test_rfc3339_valid)
{
    ck_assert(rfc3339_valid("2026-11-20T15:04:05Z"));
    ck_assert(rfc3339_valid("2026-11-20T15:04:05z"));
    ck_assert(rfc3339_valid("2026-11-20t15:04:05Z"));
    ck_assert(rfc3339_valid("2026-11-20 15:04:05Z"));
    ck_assert(rfc3339_valid("2026-11-20T15:04:05+01:00"));
    ck_assert(rfc3339_valid("2026-11-20T15:04:05-05:30"));
    ck_assert(rfc3339_valid("2026-11-20T15:04:05+00:00"));
    ck_assert(rfc3339_valid("2026-11-20T15:04:05+23:59"));
    ck_assert(rfc3339_valid("2026-11-20T00:00:00Z"));
    ck_assert(rfc3339_valid("2026-11-20T23:59:59Z"));
    ck_assert(rfc3339_valid("2016-12-31T23:59:60Z")); /* leap second */
    ck_assert(rfc3339_valid("1900-01-01T00:00:00Z"));
    ck_assert(rfc3339_valid("2999-12-31T23:59:59Z"));
    ck_assert(rfc3339_valid("2024-02-29T12:00:00Z"));
}
END_TEST

START_TEST(test_rfc3339_fractions)
{
    ck_assert(rfc3339_valid("2026-11-20T15:04:05.1Z"));
    ck_assert(rfc3339_valid("2026-11-20T15:04:05.12Z"));
    ck_assert(rfc3339_valid("2026-11-20T15:04:05.123Z"));
    ck_assert(rfc3339_valid("2026-11-20T15:04:05.1234Z"));
    ck_assert(rfc3339_valid("2026-11-20T15:04:05.12345Z"));
    ck_assert(rfc3339_valid("2026-11-20T15:04:05.123456Z"));
    ck_assert(rfc3339_valid("2026-11-20T15:04:05.1234567Z"));
    ck_assert(rfc3339_valid("2026-11-20T15:04:05.12345678Z"));
    ck_assert(rfc3339_valid("2026-11-20T15:04:05.123456789Z"));
    ck_assert(rfc3339_valid("2026-11-20T15:04:05.123456789+02:00"));
    ck_assert(!rfc3339_valid("2026-11-20T15:04:05.1234567890Z"));
    ck_assert(!rfc3339_valid("2026-11-20T15:04:05.Z"));
    ck_assert(!rfc3339_valid("2026-11-20T15:04:05.+01:00"));
    ck_assert(!rfc3339_valid("2026-11-20T15:04:05,5Z"));
}
END_TEST

START_TEST(test_rfc3339_invalid)
{
    ck_assert(!rfc3339_valid(NULL));
    ck_assert(!rfc3339_valid(""));
    ck_assert(!rfc3339_valid("2026-11-20T15:04:05"));      /* missing offset */
    ck_assert(!rfc3339_valid("2026-11-20T15:04:05.123"));  /* missing offset */
    ck_assert(!rfc3339_valid("2026-11-20"));
    ck_assert(!rfc3339_valid("2026-11-20X15:04:05Z"));
    ck_assert(!rfc3339_valid("2026-11-20_15:04:05Z"));
    ck_assert(!rfc3339_valid("2026-11-20T24:00:00Z"));     /* hour 24 */
    ck_assert(!rfc3339_valid("2026-11-20T15:60:00Z"));
    ck_assert(!rfc3339_valid("2026-11-20T15:04:61Z"));
    ck_assert(!rfc3339_valid("1899-12-31T23:59:59Z"));     /* year too small */
    ck_assert(!rfc3339_valid("3000-01-01T00:00:00Z"));     /* year too large */
    ck_assert(!rfc3339_valid("2023-02-29T00:00:00Z"));     /* not a date */
    ck_assert(!rfc3339_valid("2026-13-01T00:00:00Z"));
    ck_assert(!rfc3339_valid("2026-11-20T15:04:05+0100"));
    ck_assert(!rfc3339_valid("2026-11-20T15:04:05+01"));
    ck_assert(!rfc3339_valid("2026-11-20T15:04:05+24:00"));
    ck_assert(!rfc3339_valid("2026-11-20T15:04:05+01:60"));
    ck_assert(!rfc3339_valid("2026-11-20T15:04:05+01:00 "));
    ck_assert(!rfc3339_valid("2026-11-20T15:04:05ZZ"));
    ck_assert(!rfc3339_valid("2026-11-20T15:04:05 Z"));
    ck_assert(!rfc3339_valid("2026-11-20T15:4:05Z"));
    ck_assert(!rfc3339_valid("2026-11-20T15-04-05Z"));
    ck_assert(!rfc3339_valid("2026-11-20T1a:04:05Z"));
    ck_assert(!rfc3339_valid("2026-11-20T15:04:05UTC"));
}
END_TEST

/* ---- base64url ----------------------------------------------------------- */

START_TEST(test_text_hash_fnv1a)
{
    /* Published FNV-1a 64-bit test vectors. */
    ck_assert(text_hash("") == 0xcbf29ce484222325ULL);
    ck_assert(text_hash("a") == 0xaf63dc4c8601ec8cULL);
    ck_assert(text_hash("foobar") == 0x85944171f73967e8ULL);
}
END_TEST

START_TEST(test_pg_lsn_valid)
{
    ck_assert(pg_lsn_valid("0/0"));
    ck_assert(pg_lsn_valid("0/16B3748"));
    ck_assert(pg_lsn_valid("16/b374d848"));
    ck_assert(pg_lsn_valid("FFFFFFFF/FFFFFFFF"));
    ck_assert(!pg_lsn_valid(""));
    ck_assert(!pg_lsn_valid("/"));
    ck_assert(!pg_lsn_valid("0/"));
    ck_assert(!pg_lsn_valid("/0"));
    ck_assert(!pg_lsn_valid("0x0/1"));
    ck_assert(!pg_lsn_valid("123456789/0"));   /* 9 digits */
    ck_assert(!pg_lsn_valid("0/123456789"));
    ck_assert(!pg_lsn_valid("0/1 "));
    ck_assert(!pg_lsn_valid(" 0/1"));
    ck_assert(!pg_lsn_valid("0/1/2"));
    ck_assert(!pg_lsn_valid("G/1"));
}
END_TEST

START_TEST(test_base64url_known_vectors)
{
    static const struct {
        const char *plain, *encoded;
    } v[] = {
        {"", ""},         {"f", "Zg"},          {"fo", "Zm8"},         {"foo", "Zm9v"},
        {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        char *e = base64url_encode((const unsigned char *)v[i].plain, strlen(v[i].plain));
        unsigned char out[16];
        ck_assert_str_eq(e, v[i].encoded);
        ck_assert_int_eq(base64url_decode(v[i].encoded, out, sizeof(out)),
                         (long)strlen(v[i].plain));
        ck_assert_str_eq((char *)out, v[i].plain);
        free(e);
    }
    /* URL-safe alphabet: 0xfb 0xff -> "-_8" (standard base64 would be "+/8=") */
    {
        const unsigned char bytes[] = {0xfb, 0xff};
        char *e = base64url_encode(bytes, sizeof(bytes));
        ck_assert_str_eq(e, "-_8");
        free(e);
    }
}
END_TEST

START_TEST(test_base64url_round_trip)
{
    unsigned char data[10];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (unsigned char)(0xf7 + 37 * i); /* bytes >= 0x80 too */
    data[3] = 0;                                  /* and an embedded zero byte */
    for (size_t len = 0; len <= 10; len++) {
        unsigned char out[16];
        char *e = base64url_encode(data, len);
        size_t expect_len = len / 3 * 4 + (len % 3 ? len % 3 + 1 : 0);
        ck_assert_ptr_nonnull(e);
        ck_assert_uint_eq(strlen(e), expect_len);
        ck_assert_msg(strspn(e, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") ==
                          strlen(e),
                      "non-url-safe character in %s", e);
        memset(out, 0xAA, sizeof(out));
        ck_assert_int_eq(base64url_decode(e, out, sizeof(out)), (long)len);
        ck_assert_mem_eq(out, data, len);
        ck_assert_int_eq(out[len], 0);
        free(e);
    }
}
END_TEST

START_TEST(test_base64url_invalid)
{
    unsigned char out[32];
    ck_assert_int_eq(base64url_decode("Zm9v=", out, sizeof(out)), -1);
    ck_assert_int_eq(base64url_decode("Zg==", out, sizeof(out)), -1);
    ck_assert_int_eq(base64url_decode("Zm+v", out, sizeof(out)), -1);
    ck_assert_int_eq(base64url_decode("Zm/v", out, sizeof(out)), -1);
    ck_assert_int_eq(base64url_decode("Zm 9v", out, sizeof(out)), -1);
    ck_assert_int_eq(base64url_decode("Zm9v\n", out, sizeof(out)), -1);
    ck_assert_int_eq(base64url_decode("Zm.v", out, sizeof(out)), -1);
    ck_assert_int_eq(base64url_decode("Zm\xc3\xa9", out, sizeof(out)), -1);
    /* a lone trailing character (length % 4 == 1) cannot encode anything */
    ck_assert_int_eq(base64url_decode("Z", out, sizeof(out)), -1);
    ck_assert_int_eq(base64url_decode("Zm9vY", out, sizeof(out)), -1);
    ck_assert_int_eq(base64url_decode("", out, sizeof(out)), 0);
    ck_assert_int_eq(out[0], 0);
}
END_TEST

START_TEST(test_base64url_small_buffer)
{
    unsigned char out[8];
    /* "Zm9v" is 3 bytes: needs 4 bytes of room (3 + NUL). */
    ck_assert_int_eq(base64url_decode("Zm9v", out, 3), -1);
    ck_assert_int_eq(base64url_decode("Zm9v", out, 4), 3);
    ck_assert_str_eq((char *)out, "foo");
    ck_assert_int_eq(base64url_decode("Zm8", out, 2), -1);
    ck_assert_int_eq(base64url_decode("Zm8", out, 3), 2);
    ck_assert_str_eq((char *)out, "fo");
    ck_assert_int_eq(base64url_decode("Zg", out, 1), -1);
    ck_assert_int_eq(base64url_decode("Zm9vYmFy", out, 6), -1);
    ck_assert_int_eq(base64url_decode("Zm9vYmFy", out, 7), 6);
    ck_assert_str_eq((char *)out, "foobar");
}
END_TEST

static Suite *textutil_suite(void)
{
    Suite *s = suite_create("textutil");
    TCase *tc;

    tc = tcase_create("utf8");
    tcase_add_test(tc, test_utf8_ascii);
    tcase_add_test(tc, test_utf8_multibyte_valid);
    tcase_add_test(tc, test_utf8_overlong);
    tcase_add_test(tc, test_utf8_surrogates);
    tcase_add_test(tc, test_utf8_truncated);
    tcase_add_test(tc, test_utf8_out_of_range);
    tcase_add_test(tc, test_utf8_bad_continuation);
    tcase_add_test(tc, test_utf8_embedded_nul);
    tcase_add_test(tc, test_utf8_length);
    tcase_add_test(tc, test_utf8_truncate);
    suite_add_tcase(s, tc);

    tc = tcase_create("uuid");
    tcase_add_test(tc, test_uuid_canonical_lowercases);
    tcase_add_test(tc, test_uuid_canonical_rejects);
    tcase_add_test(tc, test_uuid_new_is_random_v4);
    tcase_add_test(tc, test_uuid_v7_rfc9562_vector);
    tcase_add_test(tc, test_uuid_new_v7_time_ordered);
    tcase_add_test(tc, test_uuid_new);
    suite_add_tcase(s, tc);

    tc = tcase_create("dates");
    tcase_add_test(tc, test_date_valid);
    tcase_add_test(tc, test_date_format_and_range);
    tcase_add_test(tc, test_rfc3339_valid);
    tcase_add_test(tc, test_rfc3339_fractions);
    tcase_add_test(tc, test_rfc3339_invalid);
    suite_add_tcase(s, tc);

    tc = tcase_create("base64url");
    tcase_add_test(tc, test_base64url_known_vectors);
    tcase_add_test(tc, test_pg_lsn_valid);
    tcase_add_test(tc, test_text_hash_fnv1a);
    tcase_add_test(tc, test_base64url_round_trip);
    tcase_add_test(tc, test_base64url_invalid);
    tcase_add_test(tc, test_base64url_small_buffer);
    suite_add_tcase(s, tc);

    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(textutil_suite());
    int failed;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
