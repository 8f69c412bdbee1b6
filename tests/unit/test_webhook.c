/*
 * Unit tests for the activation modules that need no network: the Standard
 * Webhooks signature (its published test vector), secrets, webhook URL
 * syntax, which destination addresses are refused and what the allow-list
 * permits, the retry schedule, and the change feed's cursors and types.
 */
#include <arpa/inet.h>
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "feed.h"
#include "test_helpers.h"
#include "webhook_policy.h"
#include "webhook_sign.h"

START_TEST(test_standard_webhooks_vector)
{
    /* From the Standard Webhooks specification's test suite. */
    const char *body = "{\"test\": 2432232314}";
    char sig[WEBHOOK_SIGNATURE_LEN + 1];
    ck_assert(webhook_sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek",
                           1614265330, body, strlen(body), sig));
    ck_assert_str_eq(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    /* Any change of id, time or body changes it. */
    ck_assert(webhook_sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek",
                           1614265331, body, strlen(body), sig));
    ck_assert_str_ne(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    ck_assert(!webhook_sign("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "m", 1, "", 0, sig));
    ck_assert(!webhook_sign("whsec_not*base64", "m", 1, "", 0, sig));
}
END_TEST

START_TEST(test_secrets)
{
    char a[WEBHOOK_SECRET_LEN + 1], b[WEBHOOK_SECRET_LEN + 1];
    ck_assert(webhook_secret_new(a));
    ck_assert(webhook_secret_new(b));
    ck_assert_int_eq(strlen(a), 38);
    ck_assert(strncmp(a, "whsec_", 6) == 0);
    ck_assert_str_ne(a, b);
    ck_assert(webhook_secret_valid(a));
    ck_assert(webhook_secret_valid("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));
    ck_assert(!webhook_secret_valid("whsec_"));
    ck_assert(!webhook_secret_valid("whsec_AAAA")); /* 3 bytes: too short */
    ck_assert(!webhook_secret_valid("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS=w"));
}
END_TEST

START_TEST(test_url_syntax)
{
    struct webhook_url u;
    char err[256];
    ck_assert(webhook_url_parse("https://hooks.example.com/crm?x=1", &u, err, sizeof(err)));
    ck_assert(u.https);
    ck_assert_str_eq(u.host, "hooks.example.com");
    ck_assert_int_eq(u.port, 443);
    ck_assert(webhook_url_parse("http://127.0.0.1:8081/in", &u, err, sizeof(err)));
    ck_assert(!u.https);
    ck_assert_str_eq(u.host, "127.0.0.1");
    ck_assert_int_eq(u.port, 8081);
    ck_assert(webhook_url_parse("http://[::1]:9000", &u, err, sizeof(err)));
    ck_assert_str_eq(u.host, "::1");
    ck_assert_int_eq(u.port, 9000);
    ck_assert(!webhook_url_parse("ftp://example.com/", &u, err, sizeof(err)));
    ck_assert(!webhook_url_parse("file:///etc/passwd", &u, err, sizeof(err)));
    ck_assert(!webhook_url_parse("https://user:pw@example.com/", &u, err, sizeof(err)));
    ck_assert(!webhook_url_parse("https:///path", &u, err, sizeof(err)));
    ck_assert(!webhook_url_parse("https://example.com:0/", &u, err, sizeof(err)));
    ck_assert(!webhook_url_parse("https://example.com:99999/", &u, err, sizeof(err)));
    ck_assert(!webhook_url_parse("https://exa mple.com/", &u, err, sizeof(err)));
    ck_assert(!webhook_url_parse("", &u, err, sizeof(err)));
}
END_TEST

static bool public4(const char *text)
{
    unsigned char a[16];
    ck_assert(inet_pton(AF_INET, text, a) == 1);
    return webhook_addr_public(AF_INET, a);
}

static bool public6(const char *text)
{
    unsigned char a[16];
    ck_assert(inet_pton(AF_INET6, text, a) == 1);
    return webhook_addr_public(AF_INET6, a);
}

START_TEST(test_address_classes)
{
    ck_assert(public4("93.184.216.34"));
    ck_assert(public4("8.8.8.8"));
    ck_assert(public4("172.32.0.1"));
    ck_assert(!public4("10.0.0.1"));
    ck_assert(!public4("127.0.0.1"));
    ck_assert(!public4("127.255.1.2"));
    ck_assert(!public4("169.254.169.254"));
    ck_assert(!public4("172.16.0.1"));
    ck_assert(!public4("172.31.255.255"));
    ck_assert(!public4("192.168.1.1"));
    ck_assert(!public4("100.64.0.1"));
    ck_assert(!public4("0.0.0.0"));
    ck_assert(!public4("224.0.0.1"));
    ck_assert(!public4("255.255.255.255"));
    ck_assert(public6("2606:2800:220:1:248:1893:25c8:1946"));
    ck_assert(!public6("::1"));
    ck_assert(!public6("::"));
    ck_assert(!public6("fe80::1"));
    ck_assert(!public6("fd00::1"));
    ck_assert(!public6("ff02::1"));
    ck_assert(!public6("::ffff:127.0.0.1"));
    ck_assert(!public6("::ffff:10.1.2.3"));
    ck_assert(public6("::ffff:8.8.8.8"));
    ck_assert(!public6("64:ff9b::a9fe:a9fe")); /* NAT64 of 169.254.169.254 */
}
END_TEST

START_TEST(test_allow_list)
{
    unsigned char lo[16], ten[16], v6[16];
    char err[256];
    inet_pton(AF_INET, "127.0.0.1", lo);
    inet_pton(AF_INET, "10.1.2.3", ten);
    inet_pton(AF_INET6, "fd00::5", v6);
    ck_assert(webhook_allow_match("127.0.0.1", "127.0.0.1", AF_INET, lo));
    ck_assert(webhook_allow_match(" 10.0.0.0/8 , 127.0.0.0/8", "x", AF_INET, lo));
    ck_assert(webhook_allow_match("10.0.0.0/8", "x", AF_INET, ten));
    ck_assert(!webhook_allow_match("10.0.0.0/16", "x", AF_INET, ten));
    ck_assert(webhook_allow_match("fd00::/8", "x", AF_INET6, v6));
    ck_assert(!webhook_allow_match("fd00::/8", "x", AF_INET, ten));
    ck_assert(webhook_allow_match("hooks.internal", "HOOKS.internal", AF_INET, ten));
    ck_assert(!webhook_allow_match("internal", "hooks.internal", AF_INET, ten));
    ck_assert(!webhook_allow_match("", "localhost", AF_INET, lo));
    ck_assert(!webhook_allow_match(NULL, "localhost", AF_INET, lo));
    ck_assert(webhook_allow_valid("", err, sizeof(err)));
    ck_assert(webhook_allow_valid("127.0.0.1,10.0.0.0/8,hooks.internal,::1", err, sizeof(err)));
    ck_assert(!webhook_allow_valid("10.0.0.0/33", err, sizeof(err)));
    ck_assert(!webhook_allow_valid("hooks.internal/8", err, sizeof(err)));
    ck_assert(!webhook_allow_valid("a_b", err, sizeof(err)));
}
END_TEST

START_TEST(test_backoff_schedule)
{
    /* Doubling from the base, capped, jittered within [d/2, d). */
    ck_assert_int_eq(webhook_backoff_ms(1, 5000, 3600000, 0.0), 2500);
    ck_assert_int_eq(webhook_backoff_ms(1, 5000, 3600000, 0.999), 4997);
    ck_assert_int_eq(webhook_backoff_ms(2, 5000, 3600000, 0.0), 5000);
    ck_assert_int_eq(webhook_backoff_ms(3, 5000, 3600000, 0.0), 10000);
    ck_assert_int_eq(webhook_backoff_ms(10, 5000, 3600000, 0.0), 1280000);
    ck_assert_int_eq(webhook_backoff_ms(11, 5000, 3600000, 0.0), 1800000);
    ck_assert_int_eq(webhook_backoff_ms(1000, 5000, 3600000, 0.0), 1800000);
    ck_assert_int_lt(webhook_backoff_ms(1000, 5000, 3600000, 0.9999999), 3600000);
    for (int a = 1; a < 40; a++) {
        long long lo = webhook_backoff_ms(a, 200, 1000, 0.0);
        long long hi = webhook_backoff_ms(a, 200, 1000, 0.99);
        ck_assert_int_ge(lo, 100);
        ck_assert_int_le(hi, 1000);
        ck_assert_int_le(lo, hi);
    }
}
END_TEST

START_TEST(test_feed_cursor_and_types)
{
    struct feed_cursor c;
    char arr[256], err[512];
    ck_assert(feed_cursor_parse("745-5-1796671082", &c));
    ck_assert_str_eq(c.xid, "745");
    ck_assert_str_eq(c.seq, "5");
    ck_assert_int_eq(c.at, 1796671082LL);
    ck_assert(!feed_cursor_parse("745-5", &c));
    ck_assert(!feed_cursor_parse("745-5-1-2", &c));
    ck_assert(!feed_cursor_parse("-5-1", &c));
    ck_assert(!feed_cursor_parse("7a-5-1", &c));
    ck_assert(!feed_cursor_parse("1'--5-1", &c));
    ck_assert(!feed_cursor_parse("99999999999999999999-1-1", &c));
    ck_assert(!feed_cursor_is_start(&c));
    feed_cursor_start(&c);
    ck_assert_str_eq(c.xid, "0");
    ck_assert(feed_cursor_is_start(&c));
    ck_assert(feed_types_parse("customer.created", arr, sizeof(arr), err, sizeof(err)));
    ck_assert_str_eq(arr, "{customer.created}");
    ck_assert(feed_types_parse("traits.changed,interaction.created", arr, sizeof(arr), err,
                               sizeof(err)));
    ck_assert_str_eq(arr, "{traits.changed,interaction.created}");
    ck_assert(feed_types_parse("segment.entered,segment.exited", arr, sizeof(arr), err,
                               sizeof(err)));
    ck_assert_str_eq(arr, "{segment.entered,segment.exited}");
    ck_assert(!feed_types_parse("segment.changed", arr, sizeof(arr), err, sizeof(err)));
    ck_assert(!feed_types_parse("", arr, sizeof(arr), err, sizeof(err)));
    ck_assert(!feed_types_parse("customer.created,", arr, sizeof(arr), err, sizeof(err)));
    ck_assert(!feed_types_parse("customer.created}", arr, sizeof(arr), err, sizeof(err)));
    ck_assert(!feed_types_parse("customer.created", arr, 8, err, sizeof(err)));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("webhook");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_standard_webhooks_vector);
    tcase_add_test(tc, test_secrets);
    tcase_add_test(tc, test_url_syntax);
    tcase_add_test(tc, test_address_classes);
    tcase_add_test(tc, test_allow_list);
    tcase_add_test(tc, test_backoff_schedule);
    tcase_add_test(tc, test_feed_cursor_and_types);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
