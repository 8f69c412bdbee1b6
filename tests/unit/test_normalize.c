/*
 * Unit tests for normalize: identifier kinds, e-mail and phone normalisation,
 * namespaces and the per-kind rules of identifier_normalize.
 */
#include <check.h>
#include <string.h>

#include "normalize.h"

static char out[ID_VALUE_MAX + 1];
static char err[256];

static const char *email_ok(const char *in)
{
    err[0] = '\0';
    ck_assert_msg(normalize_email(in, out, err, sizeof(err)), "email '%s' rejected: %s", in, err);
    return out;
}

static void email_bad(const char *in)
{
    err[0] = '\0';
    ck_assert_msg(!normalize_email(in, out, err, sizeof(err)), "email '%s' accepted as '%s'", in,
                  out);
    ck_assert_msg(err[0] != '\0', "no reason given for '%s'", in);
}

static const char *phone_ok(const char *in)
{
    err[0] = '\0';
    ck_assert_msg(normalize_phone(in, out, err, sizeof(err)), "phone '%s' rejected: %s", in, err);
    return out;
}

static void phone_bad(const char *in)
{
    err[0] = '\0';
    ck_assert_msg(!normalize_phone(in, out, err, sizeof(err)), "phone '%s' accepted as '%s'", in,
                  out);
    ck_assert_msg(err[0] != '\0', "no reason given for '%s'", in);
}

/* ---- kinds --------------------------------------------------------------- */

START_TEST(test_kind_round_trip)
{
    static const char *const names[] = {"email", "phone", "external", "loyalty_card", "device"};
    for (int k = 0; k < ID_KIND_COUNT; k++) {
        enum id_kind kind = ID_KIND_COUNT;
        ck_assert_str_eq(id_kind_name((enum id_kind)k), names[k]);
        ck_assert(id_kind_parse(names[k], &kind));
        ck_assert_int_eq(kind, k);
        ck_assert_ptr_nonnull(strstr(id_kind_list(), names[k]));
    }
    ck_assert_str_eq(id_kind_list(), "email, phone, external, loyalty_card, device");
}
END_TEST

START_TEST(test_kind_unknown)
{
    enum id_kind kind = ID_DEVICE;
    ck_assert(!id_kind_parse("Email", &kind));
    ck_assert(!id_kind_parse("EMAIL", &kind));
    ck_assert(!id_kind_parse("sms", &kind));
    ck_assert(!id_kind_parse("", &kind));
    ck_assert(!id_kind_parse(" email", &kind));
    ck_assert(!id_kind_parse("loyalty-card", &kind));
    ck_assert(!id_kind_parse(NULL, &kind));
    ck_assert_int_eq(kind, ID_DEVICE); /* untouched on failure */
    ck_assert_str_eq(id_kind_name(ID_KIND_COUNT), "?");
}
END_TEST

/* ---- email --------------------------------------------------------------- */

START_TEST(test_email_trim_lower)
{
    ck_assert_str_eq(email_ok(" Ann@Example.COM "), "ann@example.com");
    ck_assert_str_eq(email_ok("\t\nBOB.Smith+Tag@Sub.Example.Org\r\n"),
                     "bob.smith+tag@sub.example.org");
    ck_assert_str_eq(email_ok("a@b.c"), "a@b.c");
}
END_TEST

START_TEST(test_email_invalid)
{
    email_bad("annexample.com");   /* missing @ */
    email_bad("ann@example@com.fr"); /* two @ */
    email_bad("a@@example.com");
    email_bad("@example.com");     /* empty local part */
    email_bad("ann@example");      /* no dot in domain */
    email_bad("ann@example.");     /* dot at end */
    email_bad("ann@.com");         /* dot right after @ */
    email_bad("ann@");
    email_bad("ann @example.com"); /* space inside */
    email_bad("ann@exa mple.com");
    email_bad("ann\t@example.com");
    email_bad("ann\x01@example.com");
    email_bad("");
    email_bad("   ");
}
END_TEST

START_TEST(test_email_reasons)
{
    email_bad("annexample.com");
    ck_assert_str_eq(err, "email must have one '@' with a non-empty local part");
    email_bad("ann@example");
    ck_assert_str_eq(err, "email domain must contain a dot");
    email_bad("an n@example.com");
    ck_assert_str_eq(err, "email must not contain spaces or control characters");
}
END_TEST

START_TEST(test_email_length)
{
    char in[400];
    char expect[400];
    /* 242 + strlen("@example.com") == 254: the longest accepted */
    memset(in, 'A', 242);
    strcpy(in + 242, "@example.com");
    ck_assert_uint_eq(strlen(in), 254);
    memset(expect, 'a', 242);
    strcpy(expect + 242, "@example.com");
    ck_assert_str_eq(email_ok(in), expect);

    /* surrounding white space does not count */
    memmove(in + 3, in, strlen(in) + 1);
    memcpy(in, "   ", 3);
    strcat(in, "  ");
    ck_assert_str_eq(email_ok(in), expect);

    memset(in, 'a', 243);
    strcpy(in + 243, "@example.com");
    ck_assert_uint_eq(strlen(in), 255);
    email_bad(in);
    ck_assert_str_eq(err, "email is longer than 254 characters");

    memset(in, 'a', 380);
    strcpy(in + 380, "@example.com");
    email_bad(in);
}
END_TEST

/* ---- phone --------------------------------------------------------------- */

START_TEST(test_phone_e164)
{
    ck_assert_str_eq(phone_ok("+33 6 12-34-56.78"), "+33612345678");
    ck_assert_str_eq(phone_ok("0033612345678"), "+33612345678");
    ck_assert_str_eq(phone_ok("00 33 6 12 34 56 78"), "+33612345678");
    ck_assert_str_eq(phone_ok("  +1 (415) 555-2671  "), "+14155552671");
    ck_assert_str_eq(phone_ok("001 (415) 555.2671"), "+14155552671");
    ck_assert_str_eq(phone_ok("+33\t612345678"), "+33612345678");
}
END_TEST

START_TEST(test_phone_parenthesised_plus)
{
    /* As implemented, '+' is only recognised as the first non-blank
     * character; "(+1) ..." is rejected rather than read as +1. */
    phone_bad("(+1) 415 555 2671");
    ck_assert_str_eq(err,
                     "phone number may contain only digits, '+', spaces, '.', '-', '(' and ')'");
    /* a "00" prefix inside parentheses is still digits: accepted */
    ck_assert_str_eq(phone_ok("(00)1 415 555 2671"), "+14155552671");
}
END_TEST

START_TEST(test_phone_invalid)
{
    phone_bad("+33 6 ABC 456");       /* letters */
    phone_bad("+33612345678x");
    phone_bad("+33/612345678");
    phone_bad("++33612345678");       /* second '+' */
    phone_bad("+33 6 12 34 56 78 +");
    phone_bad("");
    phone_bad("+");
    phone_bad("   ");
    phone_bad("0612345678");          /* national form without country code */
    ck_assert_str_eq(err, "phone number needs a country code: start with '+' or '00'");
    phone_bad("33612345678");         /* no '+' nor '00' */
    phone_bad("0");
}
END_TEST

START_TEST(test_phone_length)
{
    ck_assert_str_eq(phone_ok("+12345678"), "+12345678");               /* 8 digits */
    ck_assert_str_eq(phone_ok("+123456789012345"), "+123456789012345"); /* 15 digits */
    ck_assert_str_eq(phone_ok("00123456789012345"), "+123456789012345");
    phone_bad("+1234567");                                              /* 7 */
    ck_assert_str_eq(err, "phone number must be 8 to 15 digits in E.164 form, country code first");
    phone_bad("001234567");                                             /* 7 after 00 */
    phone_bad("+1234567890123456");                                     /* 16 */
    phone_bad("001234567890123456");
    phone_bad("+1234567890123456789012345678901234567890");             /* 40 digits */
    ck_assert_str_eq(err, "phone number has too many digits");
}
END_TEST

START_TEST(test_phone_leading_zero_country)
{
    phone_bad("+0612345678");
    phone_bad("000612345678"); /* "00" then national number starting with 0 */
    phone_bad("+ 0 6 12 34 56 78");
}
END_TEST

/* ---- identifier_normalize ------------------------------------------------ */

static struct identifier id;

static bool norm(enum id_kind kind, const char *ns, const char *value, bool *fin)
{
    memset(&id, 0x5a, sizeof(id));
    err[0] = '\0';
    return identifier_normalize(kind, ns, value, &id, err, sizeof(err), fin);
}

START_TEST(test_ident_email_phone)
{
    bool fin = true;
    ck_assert(norm(ID_EMAIL, NULL, " Ann@Example.COM ", &fin));
    ck_assert(!fin);
    ck_assert_int_eq(id.kind, ID_EMAIL);
    ck_assert_str_eq(id.namespace_, "");
    ck_assert_str_eq(id.value, "ann@example.com");

    fin = true;
    ck_assert(norm(ID_PHONE, NULL, "+33 6 12-34-56.78", &fin));
    ck_assert(!fin);
    ck_assert_int_eq(id.kind, ID_PHONE);
    ck_assert_str_eq(id.namespace_, "");
    ck_assert_str_eq(id.value, "+33612345678");

    fin = true;
    ck_assert(!norm(ID_EMAIL, NULL, "ann@example", &fin));
    ck_assert(!fin); /* the value, not the namespace, is at fault */
    ck_assert_str_eq(err, "email domain must contain a dot");

    /* field_is_namespace may be NULL */
    ck_assert(norm(ID_PHONE, NULL, "0033612345678", NULL));
    ck_assert_str_eq(id.value, "+33612345678");
    ck_assert(!norm(ID_PHONE, NULL, "+33 6 ABC", NULL));
}
END_TEST

START_TEST(test_ident_namespace_not_allowed)
{
    bool fin = false;
    ck_assert(!norm(ID_EMAIL, "crm", "ann@example.com", &fin));
    ck_assert(fin);
    ck_assert_str_eq(err, "kind 'email' does not take a namespace");

    fin = false;
    ck_assert(!norm(ID_EMAIL, "", "ann@example.com", &fin)); /* even empty */
    ck_assert(fin);

    fin = false;
    ck_assert(!norm(ID_PHONE, "fr", "+33612345678", &fin));
    ck_assert(fin);
    ck_assert_str_eq(err, "kind 'phone' does not take a namespace");

    fin = false;
    ck_assert(!norm(ID_DEVICE, "ios", "abc", &fin));
    ck_assert(fin);
    ck_assert_str_eq(err, "kind 'device' does not take a namespace");

    ck_assert(!norm(ID_EMAIL, "crm", "ann@example.com", NULL));
}
END_TEST

START_TEST(test_ident_external)
{
    bool fin = false;
    ck_assert(!norm(ID_EXTERNAL, NULL, "C-1001", &fin));
    ck_assert(fin);
    ck_assert_str_eq(err, "kind 'external' requires a namespace (the partner or system name)");

    fin = true;
    ck_assert(norm(ID_EXTERNAL, " Shopify ", "  C-1001 ", &fin));
    ck_assert(!fin);
    ck_assert_int_eq(id.kind, ID_EXTERNAL);
    ck_assert_str_eq(id.namespace_, "shopify");
    ck_assert_str_eq(id.value, "C-1001"); /* trimmed, case kept */

    ck_assert(norm(ID_EXTERNAL, "Partner_1.EU-west", "x", &fin));
    ck_assert_str_eq(id.namespace_, "partner_1.eu-west");
    ck_assert_str_eq(id.value, "x");

    /* value may contain inner spaces and non-ASCII text */
    ck_assert(norm(ID_EXTERNAL, "crm", "Caf\xc3\xa9 42", &fin));
    ck_assert_str_eq(id.value, "Caf\xc3\xa9 42");
}
END_TEST

START_TEST(test_ident_namespace_invalid)
{
    char ns[80];
    bool fin;
    static const char *const bad[] = {"", "   ", "shop ify", "shop/ify", "shop:ify", "sh\xc3\xb6p",
                                      "a+b"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        fin = false;
        ck_assert_msg(!norm(ID_EXTERNAL, bad[i], "C-1", &fin), "namespace '%s' accepted", bad[i]);
        ck_assert_msg(fin, "namespace '%s' not blamed", bad[i]);
        fin = false;
        ck_assert(!norm(ID_LOYALTY_CARD, bad[i], "123", &fin));
        ck_assert(fin);
    }
    norm(ID_EXTERNAL, "", "C-1", &fin);
    ck_assert_str_eq(err, "namespace must be 1 to 64 characters");
    norm(ID_EXTERNAL, "a b", "C-1", &fin);
    ck_assert_str_eq(err, "namespace may contain only a-z, 0-9, '_', '.' and '-'");

    memset(ns, 'N', 64);
    ns[64] = '\0';
    ck_assert(norm(ID_EXTERNAL, ns, "C-1", &fin));
    ck_assert_uint_eq(strlen(id.namespace_), 64);
    ck_assert_int_eq(id.namespace_[0], 'n');
    ns[64] = 'n';
    ns[65] = '\0';
    fin = false;
    ck_assert(!norm(ID_EXTERNAL, ns, "C-1", &fin));
    ck_assert(fin);
}
END_TEST

START_TEST(test_ident_external_value)
{
    char v[300];
    bool fin = true;
    ck_assert(!norm(ID_EXTERNAL, "crm", "", &fin));
    ck_assert(!fin);
    ck_assert_str_eq(err, "value must be 1 to 256 characters after trimming");
    ck_assert(!norm(ID_EXTERNAL, "crm", "   ", &fin));
    ck_assert(!fin);
    ck_assert(!norm(ID_EXTERNAL, "crm", "a\x01z", &fin));
    ck_assert(!fin);
    ck_assert_str_eq(err, "value must not contain control characters");
    memset(v, 'x', 256);
    v[256] = '\0';
    ck_assert(norm(ID_EXTERNAL, "crm", v, &fin));
    ck_assert_uint_eq(strlen(id.value), 256);
    v[256] = 'x';
    v[257] = '\0';
    ck_assert(!norm(ID_EXTERNAL, "crm", v, &fin));
    ck_assert(!fin);
}
END_TEST

START_TEST(test_ident_loyalty)
{
    char v[100];
    bool fin = true;
    ck_assert(norm(ID_LOYALTY_CARD, NULL, "ab-12 34", &fin));
    ck_assert(!fin);
    ck_assert_int_eq(id.kind, ID_LOYALTY_CARD);
    ck_assert_str_eq(id.namespace_, "");
    ck_assert_str_eq(id.value, "AB1234");

    ck_assert(norm(ID_LOYALTY_CARD, " Gold ", " x-y-z\t9 ", &fin));
    ck_assert_str_eq(id.namespace_, "gold");
    ck_assert_str_eq(id.value, "XYZ9");

    ck_assert(!norm(ID_LOYALTY_CARD, NULL, "ab_12", &fin));
    ck_assert(!fin);
    ck_assert_str_eq(err, "loyalty card may contain only letters, digits, spaces and '-'");
    ck_assert(!norm(ID_LOYALTY_CARD, NULL, "ab.12", &fin));
    ck_assert(!norm(ID_LOYALTY_CARD, NULL, " - - ", &fin));
    ck_assert_str_eq(err, "loyalty card must be 1 to 64 characters");
    ck_assert(!norm(ID_LOYALTY_CARD, NULL, "", &fin));

    memset(v, 'k', 64);
    strcpy(v + 64, " - ");
    ck_assert(norm(ID_LOYALTY_CARD, NULL, v, &fin)); /* separators do not count */
    ck_assert_uint_eq(strlen(id.value), 64);
    ck_assert_int_eq(id.value[0], 'K');
    memset(v, 'k', 65);
    v[65] = '\0';
    ck_assert(!norm(ID_LOYALTY_CARD, NULL, v, &fin));
    ck_assert(!fin);
}
END_TEST

START_TEST(test_ident_device)
{
    bool fin = true;
    ck_assert(norm(ID_DEVICE, NULL, "  dev-ABC:42 \n", &fin));
    ck_assert(!fin);
    ck_assert_int_eq(id.kind, ID_DEVICE);
    ck_assert_str_eq(id.namespace_, "");
    ck_assert_str_eq(id.value, "dev-ABC:42");
    ck_assert(!norm(ID_DEVICE, NULL, " \t ", &fin));
    ck_assert(!fin);
    ck_assert(!norm(ID_DEVICE, NULL, "dev\x7f", &fin));
}
END_TEST

START_TEST(test_ident_unknown_kind)
{
    bool fin = true;
    ck_assert(!norm(ID_KIND_COUNT, NULL, "x", &fin));
    ck_assert(!fin);
    ck_assert_str_eq(err, "unknown identifier kind");
}
END_TEST

static Suite *normalize_suite(void)
{
    Suite *s = suite_create("normalize");
    TCase *tc;

    tc = tcase_create("kinds");
    tcase_add_test(tc, test_kind_round_trip);
    tcase_add_test(tc, test_kind_unknown);
    suite_add_tcase(s, tc);

    tc = tcase_create("email");
    tcase_add_test(tc, test_email_trim_lower);
    tcase_add_test(tc, test_email_invalid);
    tcase_add_test(tc, test_email_reasons);
    tcase_add_test(tc, test_email_length);
    suite_add_tcase(s, tc);

    tc = tcase_create("phone");
    tcase_add_test(tc, test_phone_e164);
    tcase_add_test(tc, test_phone_parenthesised_plus);
    tcase_add_test(tc, test_phone_invalid);
    tcase_add_test(tc, test_phone_length);
    tcase_add_test(tc, test_phone_leading_zero_country);
    suite_add_tcase(s, tc);

    tc = tcase_create("identifier");
    tcase_add_test(tc, test_ident_email_phone);
    tcase_add_test(tc, test_ident_namespace_not_allowed);
    tcase_add_test(tc, test_ident_external);
    tcase_add_test(tc, test_ident_namespace_invalid);
    tcase_add_test(tc, test_ident_external_value);
    tcase_add_test(tc, test_ident_loyalty);
    tcase_add_test(tc, test_ident_device);
    tcase_add_test(tc, test_ident_unknown_kind);
    suite_add_tcase(s, tc);

    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(normalize_suite());
    int failed;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
