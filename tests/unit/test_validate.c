/*
 * Unit tests for validate (request bodies) and problem (RFC 9457 documents,
 * JSON pointers of field errors).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "problem.h"
#include "validate.h"
#include "test_helpers.h"

/* ---- helpers ------------------------------------------------------------- */

static json_t *find_error(json_t *errors, const char *pointer)
{
    size_t i;
    json_t *e;
    json_array_foreach(errors, i, e) {
        const char *p = json_string_value(json_object_get(e, "pointer"));
        if (p != NULL && strcmp(p, pointer) == 0)
            return e;
    }
    return NULL;
}

/* errors holds exactly one entry, at pointer; returns its detail. */
static const char *only_error(json_t *errors, const char *pointer)
{
    json_t *e;
    ck_assert_msg(json_array_size(errors) == 1, "expected only %s, got [%s]", pointer,
                  pointers(errors));
    e = json_array_get(errors, 0);
    ck_assert_str_eq(json_string_value(json_object_get(e, "pointer")), pointer);
    ck_assert_uint_eq(json_object_size(e), 2);
    ck_assert_ptr_nonnull(json_string_value(json_object_get(e, "detail")));
    return json_string_value(json_object_get(e, "detail"));
}

static void has_error(json_t *errors, const char *pointer)
{
    ck_assert_msg(find_error(errors, pointer) != NULL, "no error at %s in [%s]", pointer,
                  pointers(errors));
}

/* Run validate_resolve on text; returns its result, errors in *errs (caller decrefs). */
static bool resolve(const char *text, json_t **body, struct resolve_request *rr, json_t **errs)
{
    *body = J(text);
    *errs = json_array();
    return validate_resolve(*body, rr, *errs);
}

/* Resolve body must fail with exactly one error at pointer. */
static void resolve_fails_at(const char *text, const char *pointer)
{
    json_t *body, *errs;
    struct resolve_request rr;
    ck_assert_msg(!resolve(text, &body, &rr, &errs), "accepted: %s", text);
    only_error(errs, pointer);
    json_decref(errs);
    json_decref(body);
}

static void resolve_passes(const char *text)
{
    json_t *body, *errs;
    struct resolve_request rr;
    bool ok = resolve(text, &body, &rr, &errs);
    ck_assert_msg(ok, "rejected (%s): %s", pointers(errs), text);
    ck_assert_uint_eq(json_array_size(errs), 0);
    json_decref(errs);
    json_decref(body);
}

static char *repeat(const char *unit, int n)
{
    size_t ul = strlen(unit);
    char *s = malloc(ul * (size_t)n + 1);
    for (int i = 0; i < n; i++)
        memcpy(s + ul * (size_t)i, unit, ul);
    s[ul * (size_t)n] = '\0';
    return s;
}

/* ---- validate_resolve ---------------------------------------------------- */

START_TEST(test_resolve_ok)
{
    json_t *body, *errs;
    struct resolve_request rr;
    ck_assert(resolve("{\"identifiers\": [{\"kind\": \"email\", \"value\": \" Ann@Example.COM \"},"
                      "  {\"kind\": \"external\", \"namespace\": \"Shopify\", \"value\": \"C-1001\"},"
                      "  {\"kind\": \"phone\", \"value\": \"0033612345678\"},"
                      "  {\"kind\": \"loyalty_card\", \"value\": \"ab-12 34\"}],"
                      " \"traits\": {\"first_name\": \"Ann\", \"last_name\": null,"
                      "   \"birthday\": \"1990-04-01\", \"gender\": \"f\","
                      "   \"address\": {\"city\": \"Lyon\"}, \"attributes\": {\"segment_hint\": \"vip\"}},"
                      " \"source\": \"web-shop\"}",
                      &body, &rr, &errs));
    ck_assert_uint_eq(json_array_size(errs), 0);
    ck_assert_int_eq(rr.ids.count, 4);
    ck_assert_int_eq(rr.ids.items[0].kind, ID_EMAIL);
    ck_assert_str_eq(rr.ids.items[0].namespace_, "");
    ck_assert_str_eq(rr.ids.items[0].value, "ann@example.com");
    ck_assert_int_eq(rr.ids.items[1].kind, ID_EXTERNAL);
    ck_assert_str_eq(rr.ids.items[1].namespace_, "shopify");
    ck_assert_str_eq(rr.ids.items[1].value, "C-1001");
    ck_assert_int_eq(rr.ids.items[2].kind, ID_PHONE);
    ck_assert_str_eq(rr.ids.items[2].value, "+33612345678");
    ck_assert_int_eq(rr.ids.items[3].kind, ID_LOYALTY_CARD);
    ck_assert_str_eq(rr.ids.items[3].value, "AB1234");
    ck_assert_str_eq(rr.source, "web-shop");
    ck_assert_ptr_eq(rr.traits, json_object_get(body, "traits"));
    json_decref(errs);
    json_decref(body);
}
END_TEST

START_TEST(test_resolve_no_traits)
{
    json_t *body, *errs;
    struct resolve_request rr;
    ck_assert(resolve("{\"identifiers\": [{\"kind\": \"device\", \"value\": \" d1 \"}],"
                      " \"source\": \"app\"}",
                      &body, &rr, &errs));
    ck_assert_ptr_null(rr.traits);
    ck_assert_int_eq(rr.ids.count, 1);
    ck_assert_str_eq(rr.ids.items[0].value, "d1");
    json_decref(errs);
    json_decref(body);
}
END_TEST

START_TEST(test_resolve_unknown_field)
{
    json_t *body, *errs;
    struct resolve_request rr;
    const char *d;
    ck_assert(!resolve("{\"identifiers\": [{\"kind\": \"email\", \"value\": \"a@b.co\"}],"
                       " \"source\": \"s\", \"foo\": 1}",
                       &body, &rr, &errs));
    d = only_error(errs, "/foo");
    ck_assert_str_eq(d, "unknown field 'foo'");
    json_decref(errs);
    json_decref(body);

    /* a key with '/' and '~' is escaped in the pointer (RFC 6901) */
    resolve_fails_at("{\"identifiers\": [{\"kind\": \"email\", \"value\": \"a@b.co\"}],"
                     " \"source\": \"s\", \"a/b~c\": 1}",
                     "/a~1b~0c");
}
END_TEST

START_TEST(test_resolve_bad_identifier)
{
    json_t *body, *errs;
    struct resolve_request rr;
    const char *d;
    ck_assert(!resolve("{\"identifiers\": [{\"kind\": \"email\", \"value\": \"a@b.co\"},"
                       "                  {\"kind\": \"email\", \"value\": \"not-an-email\"}],"
                       " \"source\": \"s\"}",
                       &body, &rr, &errs));
    d = only_error(errs, "/identifiers/1/value");
    ck_assert_str_eq(d, "email must have one '@' with a non-empty local part");
    ck_assert_int_eq(rr.ids.count, 1);
    json_decref(errs);
    json_decref(body);
}
END_TEST

START_TEST(test_resolve_identifier_shapes)
{
    resolve_fails_at("{\"identifiers\": [{\"kind\": \"fax\", \"value\": \"1\"}], \"source\": \"s\"}",
                     "/identifiers/0/kind");
    resolve_fails_at("{\"identifiers\": [{\"kind\": 1, \"value\": \"1\"}], \"source\": \"s\"}",
                     "/identifiers/0/kind");
    resolve_fails_at("{\"identifiers\": [{\"value\": \"a@b.co\"}], \"source\": \"s\"}",
                     "/identifiers/0/kind");
    resolve_fails_at("{\"identifiers\": [{\"kind\": \"email\"}], \"source\": \"s\"}",
                     "/identifiers/0/value");
    resolve_fails_at("{\"identifiers\": [{\"kind\": \"email\", \"value\": 5}], \"source\": \"s\"}",
                     "/identifiers/0/value");
    resolve_fails_at("{\"identifiers\": [{\"kind\": \"email\", \"namespace\": \"x\","
                     " \"value\": \"a@b.co\"}], \"source\": \"s\"}",
                     "/identifiers/0/namespace");
    resolve_fails_at("{\"identifiers\": [{\"kind\": \"external\", \"value\": \"C1\"}],"
                     " \"source\": \"s\"}",
                     "/identifiers/0/namespace");
    resolve_fails_at("{\"identifiers\": [{\"kind\": \"external\", \"namespace\": 3,"
                     " \"value\": \"C1\"}], \"source\": \"s\"}",
                     "/identifiers/0/namespace");
    resolve_fails_at("{\"identifiers\": [{\"kind\": \"external\", \"namespace\": \"a b\","
                     " \"value\": \"C1\"}], \"source\": \"s\"}",
                     "/identifiers/0/namespace");
    resolve_fails_at("{\"identifiers\": [{\"kind\": \"email\", \"value\": \"a@b.co\", \"x\": 1}],"
                     " \"source\": \"s\"}",
                     "/identifiers/0/x");
    resolve_fails_at("{\"identifiers\": [\"a@b.co\"], \"source\": \"s\"}", "/identifiers/0");
    resolve_fails_at("{\"identifiers\": [], \"source\": \"s\"}", "/identifiers");
    resolve_fails_at("{\"identifiers\": {}, \"source\": \"s\"}", "/identifiers");
    resolve_fails_at("{\"source\": \"s\"}", "/identifiers");
}
END_TEST

START_TEST(test_resolve_identifier_count)
{
    char buf[4096];
    size_t n = 0;
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "{\"source\": \"s\", \"identifiers\": [");
    for (int i = 0; i < MAX_IDENTIFIERS; i++)
        n += (size_t)snprintf(buf + n, sizeof(buf) - n,
                              "%s{\"kind\": \"device\", \"value\": \"d%d\"}", i ? "," : "", i);
    snprintf(buf + n, sizeof(buf) - n, "]}");
    resolve_passes(buf); /* 20 */
    snprintf(buf + n, sizeof(buf) - n, ", {\"kind\": \"device\", \"value\": \"x\"}]}");
    resolve_fails_at(buf, "/identifiers"); /* 21 */
}
END_TEST

START_TEST(test_resolve_source)
{
    char buf[1024];
    char *s64 = repeat("s", 64), *s65 = repeat("s", 65), *u64 = repeat("\xc3\xa9", 64);
    const char *ids = "\"identifiers\": [{\"kind\": \"device\", \"value\": \"d\"}]";
    snprintf(buf, sizeof(buf), "{%s}", ids);
    resolve_fails_at(buf, "/source");
    snprintf(buf, sizeof(buf), "{%s, \"source\": \"\"}", ids);
    resolve_fails_at(buf, "/source");
    snprintf(buf, sizeof(buf), "{%s, \"source\": 7}", ids);
    resolve_fails_at(buf, "/source");
    snprintf(buf, sizeof(buf), "{%s, \"source\": null}", ids);
    resolve_fails_at(buf, "/source");
    snprintf(buf, sizeof(buf), "{%s, \"source\": \"%s\"}", ids, s64);
    resolve_passes(buf);
    snprintf(buf, sizeof(buf), "{%s, \"source\": \"%s\"}", ids, s65);
    resolve_fails_at(buf, "/source");
    /* 64 characters (128 bytes) is within "1..64 chars" */
    snprintf(buf, sizeof(buf), "{%s, \"source\": \"%s\"}", ids, u64);
    resolve_passes(buf);
    free(s64);
    free(s65);
    free(u64);
}
END_TEST

START_TEST(test_resolve_several_errors)
{
    json_t *body, *errs;
    struct resolve_request rr;
    ck_assert(!resolve("{\"identifiers\": [{\"kind\": \"phone\", \"value\": \"abc\"}],"
                       " \"traits\": {\"nickname\": \"x\"}, \"extra\": true}",
                       &body, &rr, &errs));
    ck_assert_msg(json_array_size(errs) == 4, "got [%s]", pointers(errs));
    has_error(errs, "/extra");
    has_error(errs, "/source");
    has_error(errs, "/identifiers/0/value");
    has_error(errs, "/traits/nickname");
    json_decref(errs);
    json_decref(body);
}
END_TEST

/* ---- traits -------------------------------------------------------------- */

static void traits_fail_at(const char *traits, const char *pointer)
{
    char buf[2048];
    snprintf(buf, sizeof(buf),
             "{\"identifiers\": [{\"kind\": \"device\", \"value\": \"d\"}], \"source\": \"s\","
             " \"traits\": %s}",
             traits);
    resolve_fails_at(buf, pointer);
}

static void traits_pass(const char *traits)
{
    json_t *t = J(traits), *errs = json_array();
    ck_assert_msg(validate_traits(t, "", errs), "rejected (%s): %s", pointers(errs), traits);
    ck_assert_uint_eq(json_array_size(errs), 0);
    json_decref(errs);
    json_decref(t);
}

START_TEST(test_traits_unknown_and_birthday)
{
    json_t *t, *errs;
    traits_fail_at("{\"nickname\": \"Annie\"}", "/traits/nickname");
    traits_fail_at("{\"birthday\": \"1990-02-30\"}", "/traits/birthday");
    traits_fail_at("{\"birthday\": \"1899-12-31\"}", "/traits/birthday");
    traits_fail_at("{\"birthday\": \"1990-2-3\"}", "/traits/birthday");
    traits_fail_at("{\"birthday\": 19900203}", "/traits/birthday");
    traits_fail_at("\"Ann\"", "/traits");
    traits_fail_at("[]", "/traits");

    t = J("{\"birthday\": \"1990-02-30\"}");
    errs = json_array();
    ck_assert(!validate_traits(t, "", errs));
    ck_assert_str_eq(only_error(errs, "/traits/birthday"),
                     "'birthday' must be a real date YYYY-MM-DD or null");
    json_decref(errs);
    json_decref(t);

    traits_pass("{\"birthday\": \"2000-02-29\"}");
    traits_pass("{\"birthday\": null}");
    traits_pass("{}");
}
END_TEST

START_TEST(test_traits_strings)
{
    char buf[1024];
    char *a200 = repeat("\xc3\xa9", 200), *a201 = repeat("a", 201), *g50 = repeat("g", 50),
         *g51 = repeat("g", 51);

    traits_pass("{\"first_name\": \"Ann\", \"last_name\": \"Lee\", \"gender\": \"f\"}");
    traits_pass("{\"first_name\": null, \"last_name\": null, \"gender\": null}");
    traits_fail_at("{\"first_name\": \"\"}", "/traits/first_name");
    traits_fail_at("{\"last_name\": 3}", "/traits/last_name");
    traits_fail_at("{\"gender\": true}", "/traits/gender");

    snprintf(buf, sizeof(buf), "{\"first_name\": \"%s\"}", a200); /* 200 characters, 400 bytes */
    traits_pass(buf);
    snprintf(buf, sizeof(buf), "{\"last_name\": \"%s\"}", a201);
    traits_fail_at(buf, "/traits/last_name");
    snprintf(buf, sizeof(buf), "{\"gender\": \"%s\"}", g50);
    traits_pass(buf);
    snprintf(buf, sizeof(buf), "{\"gender\": \"%s\"}", g51);
    traits_fail_at(buf, "/traits/gender");
    free(a200);
    free(a201);
    free(g50);
    free(g51);
}
END_TEST

START_TEST(test_traits_objects)
{
    char buf[1024], ptr[128];
    char *k64 = repeat("k", 64), *k65 = repeat("k", 65), *u64 = repeat("\xc3\xa9", 64);
    traits_pass("{\"address\": {\"city\": \"Lyon\", \"zip\": 69001}, \"attributes\": {\"a\": [1, {}]}}");
    traits_pass("{\"address\": null, \"attributes\": null}");
    traits_pass("{\"attributes\": {\"vip\": null}}");
    traits_fail_at("{\"address\": \"Lyon\"}", "/traits/address");
    traits_fail_at("{\"attributes\": [1]}", "/traits/attributes");
    traits_fail_at("{\"attributes\": {\"\": 1}}", "/traits/attributes/");
    snprintf(buf, sizeof(buf), "{\"attributes\": {\"%s\": 1}}", k64);
    traits_pass(buf);
    /* 64 characters (128 bytes) is within "1..64 characters" */
    snprintf(buf, sizeof(buf), "{\"attributes\": {\"%s\": 1}}", u64);
    traits_pass(buf);
    snprintf(buf, sizeof(buf), "{\"attributes\": {\"%s\": 1}}", k65);
    snprintf(ptr, sizeof(ptr), "/traits/attributes/%s", k65);
    traits_fail_at(buf, ptr);
    /* 62 + 3 = 65 characters, with '/' and '~' escaped in the pointer */
    k64[62] = '\0';
    snprintf(buf, sizeof(buf), "{\"attributes\": {\"%s/~k\": 1}}", k64);
    snprintf(ptr, sizeof(ptr), "/traits/attributes/%s~1~0k", k64);
    traits_fail_at(buf, ptr);
    free(k64);
    free(k65);
    free(u64);
}
END_TEST

START_TEST(test_traits_request)
{
    json_t *body = J("{\"source\": \"crm-ui\", \"traits\": {\"first_name\": \"Bo\"}}");
    json_t *errs = json_array();
    struct traits_request tr;
    ck_assert(validate_traits_request(body, &tr, errs));
    ck_assert_uint_eq(json_array_size(errs), 0);
    ck_assert_str_eq(tr.source, "crm-ui");
    ck_assert_ptr_eq(tr.traits, json_object_get(body, "traits"));
    json_decref(errs);
    json_decref(body);

    body = J("{\"source\": \"crm-ui\"}");
    errs = json_array();
    ck_assert(!validate_traits_request(body, &tr, errs));
    ck_assert_str_eq(only_error(errs, "/traits"), "'traits' is required");
    json_decref(errs);
    json_decref(body);

    body = J("{\"traits\": {\"nick\": 1}, \"customer_id\": \"x\"}");
    errs = json_array();
    ck_assert(!validate_traits_request(body, &tr, errs));
    ck_assert_msg(json_array_size(errs) == 3, "got [%s]", pointers(errs));
    has_error(errs, "/customer_id");
    has_error(errs, "/source");
    has_error(errs, "/traits/nick");
    json_decref(errs);
    json_decref(body);
}
END_TEST

/* ---- validate_interaction ------------------------------------------------ */

#define CID "\"customer_id\": \"123e4567-e89b-42d3-a456-426614174abc\""
#define BASE "\"source\": \"pos-eu\", \"external_id\": \"r-1\", \"channel\": \"store\"," \
             " \"type\": \"purchase\", \"occurred_at\": \"2026-11-20T15:04:05Z\""

struct ir_run {
    json_t *obj, *errs;
    struct interaction_request ir;
    bool ok;
};

static void ir_run(struct ir_run *r, const char *text, const char *prefix)
{
    r->obj = J(text);
    r->errs = json_array();
    r->ok = validate_interaction(r->obj, prefix, &r->ir, r->errs);
}

static void ir_done(struct ir_run *r)
{
    interaction_request_clear(&r->ir);
    ck_assert_ptr_null(r->ir.tags);
    json_decref(r->errs);
    json_decref(r->obj);
}

/* Interaction with BASE fields plus extra (", ..." or "") must fail only at pointer. */
static const char *ir_fails_at(const char *fields, const char *pointer)
{
    static char detail[600];
    struct ir_run r;
    ir_run(&r, fields, "");
    ck_assert_msg(!r.ok, "accepted: %s", fields);
    snprintf(detail, sizeof(detail), "%s", only_error(r.errs, pointer));
    ir_done(&r);
    return detail;
}

static void ir_passes(const char *fields)
{
    struct ir_run r;
    ir_run(&r, fields, "");
    ck_assert_msg(r.ok, "rejected (%s): %s", pointers(r.errs), fields);
    ck_assert_uint_eq(json_array_size(r.errs), 0);
    ir_done(&r);
}

START_TEST(test_interaction_full)
{
    struct ir_run r;
    json_t *want_tags;
    ir_run(&r,
           "{\"customer_id\": \"123E4567-E89B-42D3-A456-426614174ABC\","
           " \"source\": \"pos-eu\", \"external_id\": \"receipt-778\", \"channel\": \"store\","
           " \"type\": \"purchase\", \"occurred_at\": \"2026-11-20T15:04:05+01:00\","
           " \"amount\": 59.9, \"currency\": \"EUR\", \"cost\": 4.1,"
           " \"tags\": [\"Premium_Support\", \"running\", \"RUNNING\", \"premium_support\", \"x\"],"
           " \"payload\": {\"sku\": \"X1\"}}",
           "");
    ck_assert_msg(r.ok, "rejected: %s", pointers(r.errs));
    ck_assert_uint_eq(json_array_size(r.errs), 0);
    ck_assert(r.ir.by_customer_id);
    ck_assert_str_eq(r.ir.customer_id, "123e4567-e89b-42d3-a456-426614174abc");
    ck_assert_int_eq(r.ir.ids.count, 0);
    ck_assert_str_eq(r.ir.source, "pos-eu");
    ck_assert_str_eq(r.ir.external_id, "receipt-778");
    ck_assert_str_eq(r.ir.channel, "store");
    ck_assert_str_eq(r.ir.type, "purchase");
    ck_assert_str_eq(r.ir.occurred_at, "2026-11-20T15:04:05+01:00");
    ck_assert(r.ir.has_amount);
    ck_assert_str_eq(r.ir.amount, "59.9000");
    ck_assert(r.ir.has_cost);
    ck_assert_str_eq(r.ir.cost, "4.1000");
    ck_assert_str_eq(r.ir.currency, "EUR");
    want_tags = J("[\"premium_support\", \"running\", \"x\"]");
    ck_assert_msg(json_equal(r.ir.tags, want_tags), "tags differ");
    json_decref(want_tags);
    ck_assert_ptr_eq(r.ir.payload, json_object_get(r.obj, "payload"));
    ir_done(&r);
}
END_TEST

START_TEST(test_interaction_minimal)
{
    struct ir_run r;
    ir_run(&r, "{" CID ", " BASE "}", "");
    ck_assert_msg(r.ok, "rejected: %s", pointers(r.errs));
    ck_assert(!r.ir.has_amount);
    ck_assert(!r.ir.has_cost);
    ck_assert_str_eq(r.ir.currency, "");
    ck_assert_ptr_null(r.ir.payload);
    ck_assert_ptr_nonnull(r.ir.tags);
    ck_assert_uint_eq(json_array_size(r.ir.tags), 0);
    ir_done(&r);

    /* null amount / cost / currency mean "absent" */
    ir_run(&r, "{" CID ", " BASE ", \"amount\": null, \"cost\": null, \"currency\": null}", "");
    ck_assert_msg(r.ok, "rejected: %s", pointers(r.errs));
    ck_assert(!r.ir.has_amount);
    ck_assert(!r.ir.has_cost);
    ir_done(&r);

    /* every channel and type is accepted */
    {
        static const char *const ch[] = {"web", "app", "email", "sms", "phone", "chat", "social",
                                         "store", "partner"};
        static const char *const ty[] = {"purchase", "return", "exchange", "complaint",
                                         "feedback", "review", "support_call", "inquiry",
                                         "visit", "page_view", "cart", "outbound_message"};
        char buf[512];
        for (size_t i = 0; i < sizeof(ch) / sizeof(ch[0]); i++) {
            ck_assert(channel_valid(ch[i]));
            snprintf(buf, sizeof(buf),
                     "{" CID ", \"source\": \"s\", \"external_id\": \"e\", \"channel\": \"%s\","
                     " \"type\": \"visit\", \"occurred_at\": \"2026-01-01T00:00:00Z\"}",
                     ch[i]);
            ir_passes(buf);
        }
        for (size_t i = 0; i < sizeof(ty) / sizeof(ty[0]); i++) {
            ck_assert(interaction_type_valid(ty[i]));
            snprintf(buf, sizeof(buf),
                     "{" CID ", \"source\": \"s\", \"external_id\": \"e\", \"channel\": \"web\","
                     " \"type\": \"%s\", \"occurred_at\": \"2026-01-01T00:00:00Z\"}",
                     ty[i]);
            ir_passes(buf);
        }
        ck_assert(!channel_valid("Web"));
        ck_assert(!interaction_type_valid("Purchase"));
    }
}
END_TEST

START_TEST(test_interaction_by_identifiers)
{
    struct ir_run r;
    ir_run(&r,
           "{\"identifiers\": [{\"kind\": \"email\", \"value\": \"ANN@x.io\"}], " BASE "}", "");
    ck_assert_msg(r.ok, "rejected: %s", pointers(r.errs));
    ck_assert(!r.ir.by_customer_id);
    ck_assert_str_eq(r.ir.customer_id, "");
    ck_assert_int_eq(r.ir.ids.count, 1);
    ck_assert_str_eq(r.ir.ids.items[0].value, "ann@x.io");
    ir_done(&r);
}
END_TEST

START_TEST(test_interaction_money)
{
    struct ir_run r;
    ir_run(&r, "{" CID ", " BASE ", \"amount\": 10, \"currency\": \"USD\"}", "");
    ck_assert(r.ok);
    ck_assert(r.ir.has_amount);
    ck_assert_str_eq(r.ir.amount, "10");
    ck_assert_str_eq(r.ir.currency, "USD");
    ir_done(&r);

    ir_run(&r, "{" CID ", " BASE ", \"amount\": \"12.50\", \"cost\": \"0\", \"currency\": \"EUR\"}",
           "");
    ck_assert(r.ok);
    ck_assert_str_eq(r.ir.amount, "12.50");
    ck_assert(r.ir.has_cost);
    ck_assert_str_eq(r.ir.cost, "0");
    ir_done(&r);

    /* currency alone is fine */
    ir_run(&r, "{" CID ", " BASE ", \"currency\": \"JPY\"}", "");
    ck_assert(r.ok);
    ck_assert_str_eq(r.ir.currency, "JPY");
    ir_done(&r);

    ck_assert_str_eq(ir_fails_at("{" CID ", " BASE ", \"amount\": 59.9}", "/currency"),
                     "'currency' is required with 'amount' or 'cost'");
    ir_fails_at("{" CID ", " BASE ", \"cost\": 1}", "/currency");
    ir_fails_at("{" CID ", " BASE ", \"amount\": 1, \"currency\": null}", "/currency");
    ir_fails_at("{" CID ", " BASE ", \"amount\": 1, \"currency\": \"eur\"}", "/currency");
    ir_fails_at("{" CID ", " BASE ", \"amount\": 1, \"currency\": \"EURO\"}", "/currency");
    ir_fails_at("{" CID ", " BASE ", \"amount\": 1, \"currency\": \"EU\"}", "/currency");
    ir_fails_at("{" CID ", " BASE ", \"amount\": 1, \"currency\": 978}", "/currency");

    ck_assert_str_eq(ir_fails_at("{" CID ", " BASE ", \"amount\": \"abc\", \"currency\": \"EUR\"}",
                                 "/amount"),
                     "'amount' must be a decimal string like \"12.50\" (up to 12 integer and 4 "
                     "fraction digits)");
    ck_assert_str_eq(ir_fails_at("{" CID ", " BASE ", \"amount\": -1, \"currency\": \"EUR\"}",
                                 "/amount"),
                     "'amount' must be >= 0 and < 1e12");
    ir_fails_at("{" CID ", " BASE ", \"amount\": -0.01, \"currency\": \"EUR\"}", "/amount");
    ir_fails_at("{" CID ", " BASE ", \"amount\": 1e12, \"currency\": \"EUR\"}", "/amount");
    ir_fails_at("{" CID ", " BASE ", \"amount\": true, \"currency\": \"EUR\"}", "/amount");
    ir_fails_at("{" CID ", " BASE ", \"cost\": \"-1\", \"currency\": \"EUR\"}", "/cost");
    ir_fails_at("{" CID ", " BASE ", \"cost\": [], \"currency\": \"EUR\"}", "/cost");
}
END_TEST

START_TEST(test_interaction_customer_choice)
{
    const char *d;
    d = ir_fails_at("{" CID ", \"identifiers\": [{\"kind\": \"email\", \"value\": \"a@b.co\"}], "
                    BASE "}",
                    "/identifiers");
    ck_assert_str_eq(d, "give exactly one of 'customer_id' and 'identifiers'");
    d = ir_fails_at("{" BASE "}", "/customer_id");
    ck_assert_str_eq(d, "give exactly one of 'customer_id' and 'identifiers'");
    d = ir_fails_at("{\"customer_id\": \"not-a-uuid\", " BASE "}", "/customer_id");
    ck_assert_str_eq(d, "'customer_id' must be a UUID");
    ir_fails_at("{\"customer_id\": 42, " BASE "}", "/customer_id");
    ir_fails_at("{\"identifiers\": [], " BASE "}", "/identifiers");
    ir_fails_at("{\"identifiers\": [{\"kind\": \"phone\", \"value\": \"12\"}], " BASE "}",
                "/identifiers/0/value");
}
END_TEST

START_TEST(test_interaction_enums_and_types)
{
    const char *d;
    d = ir_fails_at("{" CID ", \"source\": \"s\", \"external_id\": \"e\", \"channel\": \"fax\","
                    " \"type\": \"visit\", \"occurred_at\": \"2026-01-01T00:00:00Z\"}",
                    "/channel");
    ck_assert_str_eq(d, "unknown channel 'fax' (one of: web, app, email, sms, phone, chat, social, "
                        "store, partner)");
    d = ir_fails_at("{" CID ", \"source\": \"s\", \"external_id\": \"e\", \"channel\": \"web\","
                    " \"type\": \"refund\", \"occurred_at\": \"2026-01-01T00:00:00Z\"}",
                    "/type");
    ck_assert_str_eq(d, "unknown type 'refund' (one of: purchase, return, exchange, complaint, "
                        "feedback, review, support_call, inquiry, visit, page_view, cart, "
                        "outbound_message)");
    d = ir_fails_at("{" CID ", \"source\": \"s\", \"external_id\": \"e\", \"channel\": 5,"
                    " \"type\": \"visit\", \"occurred_at\": \"2026-01-01T00:00:00Z\"}",
                    "/channel");
    ck_assert_str_eq(d, "'channel' must be a string");
    ir_fails_at("{" CID ", \"source\": \"s\", \"external_id\": \"e\", \"channel\": \"web\","
                " \"type\": [\"visit\"], \"occurred_at\": \"2026-01-01T00:00:00Z\"}",
                "/type");
    d = ir_fails_at("{" CID ", \"source\": \"s\", \"external_id\": \"e\","
                    " \"type\": \"visit\", \"occurred_at\": \"2026-01-01T00:00:00Z\"}",
                    "/channel");
    ck_assert_str_eq(d, "'channel' is required");
    ir_fails_at("{" CID ", \"source\": \"s\", \"external_id\": \"e\", \"channel\": \"web\","
                " \"occurred_at\": \"2026-01-01T00:00:00Z\"}",
                "/type");
    ir_fails_at("{" CID ", \"source\": \"s\", \"external_id\": \"e\", \"channel\": \"\","
                " \"type\": \"visit\", \"occurred_at\": \"2026-01-01T00:00:00Z\"}",
                "/channel");
}
END_TEST

START_TEST(test_interaction_occurred_at)
{
    const char *tail = "\"source\": \"s\", \"external_id\": \"e\", \"channel\": \"web\","
                       " \"type\": \"visit\"";
    char buf[512];
    const char *d;
    static const char *const bad[] = {"2026-11-20", "2026-11-20T15:04:05",
                                      "2026-11-20T24:00:00Z", "1899-12-31T23:59:59Z",
                                      "2026-02-30T00:00:00Z", "yesterday"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(buf, sizeof(buf), "{" CID ", %s, \"occurred_at\": \"%s\"}", tail, bad[i]);
        d = ir_fails_at(buf, "/occurred_at");
        ck_assert_str_eq(d, "'occurred_at' must be an RFC 3339 timestamp with offset, year "
                            "1900..2999");
    }
    snprintf(buf, sizeof(buf), "{" CID ", %s}", tail);
    ck_assert_str_eq(ir_fails_at(buf, "/occurred_at"), "'occurred_at' is required");
    snprintf(buf, sizeof(buf), "{" CID ", %s, \"occurred_at\": 1700000000}", tail);
    ir_fails_at(buf, "/occurred_at");
    snprintf(buf, sizeof(buf), "{" CID ", %s, \"occurred_at\": \"2026-11-20 15:04:05.123456-08:00\"}",
             tail);
    ir_passes(buf);
}
END_TEST

START_TEST(test_interaction_strings_and_unknown)
{
    char buf[1024];
    char *e256 = repeat("e", 256), *e257 = repeat("e", 257);
    const char *rest = "\"channel\": \"web\", \"type\": \"visit\","
                       " \"occurred_at\": \"2026-01-01T00:00:00Z\"";
    snprintf(buf, sizeof(buf), "{" CID ", \"external_id\": \"e\", %s}", rest);
    ck_assert_str_eq(ir_fails_at(buf, "/source"), "'source' is required");
    snprintf(buf, sizeof(buf), "{" CID ", \"source\": \"s\", %s}", rest);
    ir_fails_at(buf, "/external_id");
    snprintf(buf, sizeof(buf), "{" CID ", \"source\": \"s\", \"external_id\": \"%s\", %s}", e256,
             rest);
    ir_passes(buf);
    snprintf(buf, sizeof(buf), "{" CID ", \"source\": \"s\", \"external_id\": \"%s\", %s}", e257,
             rest);
    ck_assert_str_eq(ir_fails_at(buf, "/external_id"),
                     "'external_id' must be 1 to 256 characters without NUL");
    snprintf(buf, sizeof(buf), "{" CID ", \"source\": \"s\", \"external_id\": 12, %s}", rest);
    ir_fails_at(buf, "/external_id");

    ck_assert_str_eq(ir_fails_at("{" CID ", " BASE ", \"ocurred_at\": \"x\"}", "/ocurred_at"),
                     "unknown field 'ocurred_at'");
    ir_fails_at("{" CID ", " BASE ", \"payload\": [1]}", "/payload");
    ir_fails_at("{" CID ", " BASE ", \"payload\": null}", "/payload");
    free(e256);
    free(e257);
}
END_TEST

START_TEST(test_interaction_tags)
{
    char buf[2048];
    size_t n;
    char *t64 = repeat("T", 64), *t65 = repeat("t", 65);
    struct ir_run r;

    ir_fails_at("{" CID ", " BASE ", \"tags\": \"vip\"}", "/tags");
    ir_fails_at("{" CID ", " BASE ", \"tags\": [\"a\", \"\"]}", "/tags/1");
    ir_fails_at("{" CID ", " BASE ", \"tags\": [7]}", "/tags/0");
    snprintf(buf, sizeof(buf), "{" CID ", " BASE ", \"tags\": [\"%s\"]}", t65);
    ck_assert_str_eq(ir_fails_at(buf, "/tags/0"), "each tag must be a string of 1 to 64 characters");

    snprintf(buf, sizeof(buf), "{" CID ", " BASE ", \"tags\": [\"%s\"]}", t64);
    ir_run(&r, buf, "");
    ck_assert(r.ok);
    ck_assert_uint_eq(json_array_size(r.ir.tags), 1);
    ck_assert_uint_eq(strlen(json_string_value(json_array_get(r.ir.tags, 0))), 64);
    ck_assert_int_eq(json_string_value(json_array_get(r.ir.tags, 0))[0], 't');
    ir_done(&r);

    /* 32 tags is the limit, 33 is too many */
    n = (size_t)snprintf(buf, sizeof(buf), "{" CID ", " BASE ", \"tags\": [");
    for (int i = 0; i < MAX_TAGS; i++)
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s\"t%d\"", i ? ", " : "", i);
    snprintf(buf + n, sizeof(buf) - n, "]}");
    ir_run(&r, buf, "");
    ck_assert(r.ok);
    ck_assert_uint_eq(json_array_size(r.ir.tags), MAX_TAGS);
    ir_done(&r);
    snprintf(buf + n, sizeof(buf) - n, ", \"t32\"]}");
    ir_fails_at(buf, "/tags");
    free(t64);
    free(t65);
}
END_TEST

/* ---- satisfaction scores ------------------------------------------------- */

#define FEEDBACK "\"source\": \"survey\", \"external_id\": \"s-1\", \"channel\": \"email\"," \
                 " \"type\": \"feedback\", \"occurred_at\": \"2026-11-20T15:04:05Z\""

START_TEST(test_scores_ok)
{
    struct ir_run r;
    /* absent: every kind -1 */
    ir_run(&r, "{" CID ", " FEEDBACK "}", "");
    ck_assert(r.ok);
    for (int k = 0; k < SCORE_KINDS; k++)
        ck_assert_int_eq(r.ir.scores[k], -1);
    ck_assert(!interaction_has_scores(&r.ir));
    ir_done(&r);

    ir_run(&r, "{" CID ", " FEEDBACK ", \"scores\": {\"nps\": 0, \"csat\": 5, \"ces\": 7},"
               " \"payload\": {\"comment\": \"slow delivery\"}}", "");
    ck_assert_msg(r.ok, "rejected: [%s]", pointers(r.errs));
    ck_assert_int_eq(r.ir.scores[SCORE_NPS], 0);
    ck_assert_int_eq(r.ir.scores[SCORE_CSAT], 5);
    ck_assert_int_eq(r.ir.scores[SCORE_CES], 7);
    ck_assert(interaction_has_scores(&r.ir));
    ck_assert_ptr_nonnull(r.ir.payload); /* free text stays in payload */
    ir_done(&r);

    /* the other ends of the ranges; null is "not given"; {} carries none */
    ir_run(&r, "{" CID ", " FEEDBACK ", \"scores\": {\"nps\": 10, \"csat\": 1, \"ces\": null}}",
           "");
    ck_assert(r.ok);
    ck_assert_int_eq(r.ir.scores[SCORE_NPS], 10);
    ck_assert_int_eq(r.ir.scores[SCORE_CSAT], 1);
    ck_assert_int_eq(r.ir.scores[SCORE_CES], -1);
    ir_done(&r);
    ir_passes("{" CID ", " FEEDBACK ", \"scores\": {}}");
    ir_passes("{" CID ", " FEEDBACK ", \"scores\": null}");
    ir_passes("{" CID ", " BASE ", \"scores\": {}}"); /* no score on a purchase: fine */
    /* review and support_call carry scores too */
    ir_passes("{" CID ", \"source\": \"s\", \"external_id\": \"e\", \"channel\": \"web\","
              " \"type\": \"review\", \"occurred_at\": \"2026-01-01T00:00:00Z\","
              " \"scores\": {\"csat\": 4}}");
    ir_passes("{" CID ", \"source\": \"s\", \"external_id\": \"e\", \"channel\": \"phone\","
              " \"type\": \"support_call\", \"occurred_at\": \"2026-01-01T00:00:00Z\","
              " \"scores\": {\"ces\": 2, \"csat\": 3}}");
}
END_TEST

START_TEST(test_scores_errors)
{
    /* out of range */
    ck_assert_str_eq(ir_fails_at("{" CID ", " FEEDBACK ", \"scores\": {\"nps\": 11}}",
                                 "/scores/nps"),
                     "'nps' must be an integer from 0 to 10");
    ir_fails_at("{" CID ", " FEEDBACK ", \"scores\": {\"nps\": -1}}", "/scores/nps");
    ck_assert_str_eq(ir_fails_at("{" CID ", " FEEDBACK ", \"scores\": {\"csat\": 0}}",
                                 "/scores/csat"),
                     "'csat' must be an integer from 1 to 5");
    ir_fails_at("{" CID ", " FEEDBACK ", \"scores\": {\"csat\": 6}}", "/scores/csat");
    ck_assert_str_eq(ir_fails_at("{" CID ", " FEEDBACK ", \"scores\": {\"ces\": 8}}",
                                 "/scores/ces"),
                     "'ces' must be an integer from 1 to 7");
    ir_fails_at("{" CID ", " FEEDBACK ", \"scores\": {\"ces\": 0}}", "/scores/ces");
    /* wrong types: a real (even 9.0), a string, a boolean, an array */
    ir_fails_at("{" CID ", " FEEDBACK ", \"scores\": {\"nps\": 9.0}}", "/scores/nps");
    ir_fails_at("{" CID ", " FEEDBACK ", \"scores\": {\"nps\": 8.5}}", "/scores/nps");
    ir_fails_at("{" CID ", " FEEDBACK ", \"scores\": {\"nps\": \"9\"}}", "/scores/nps");
    ir_fails_at("{" CID ", " FEEDBACK ", \"scores\": {\"csat\": true}}", "/scores/csat");
    ir_fails_at("{" CID ", " FEEDBACK ", \"scores\": {\"ces\": [3]}}", "/scores/ces");
    ir_fails_at("{" CID ", " FEEDBACK ", \"scores\": {\"nps\": 1e20}}", "/scores/nps");
    /* scores itself: an object with known kinds */
    ck_assert_str_eq(ir_fails_at("{" CID ", " FEEDBACK ", \"scores\": 9}", "/scores"),
                     "'scores' must be an object {nps?, csat?, ces?}");
    ir_fails_at("{" CID ", " FEEDBACK ", \"scores\": [9]}", "/scores");
    ck_assert_str_eq(ir_fails_at("{" CID ", " FEEDBACK ", \"scores\": {\"stars\": 4}}",
                                 "/scores/stars"),
                     "unknown field 'stars'");
    /* a score on a type that carries none */
    ck_assert_str_eq(ir_fails_at("{" CID ", " BASE ", \"scores\": {\"nps\": 9}}", "/scores"),
                     "scores are accepted on interactions of type feedback, review, "
                     "support_call only, not 'purchase'");
}
END_TEST

START_TEST(test_scores_several_and_prefix)
{
    struct ir_run r;
    ir_run(&r, "{" CID ", " FEEDBACK ", \"scores\": {\"nps\": 12, \"csat\": \"4\", \"ces\": 3,"
               " \"x\": 1}}", "/items/3");
    ck_assert(!r.ok);
    ck_assert_msg(json_array_size(r.errs) == 3, "got [%s]", pointers(r.errs));
    has_error(r.errs, "/items/3/scores/nps");
    has_error(r.errs, "/items/3/scores/csat");
    has_error(r.errs, "/items/3/scores/x");
    ck_assert_int_eq(r.ir.scores[SCORE_CES], 3);
    ir_done(&r);
    /* the kinds and the scored types as the API documents them */
    ck_assert_str_eq(score_kind(SCORE_NPS)->name, "nps");
    ck_assert_int_eq(score_kind(SCORE_NPS)->min, 0);
    ck_assert_int_eq(score_kind(SCORE_NPS)->max, 10);
    ck_assert_str_eq(score_kind(SCORE_CSAT)->name, "csat");
    ck_assert_int_eq(score_kind(SCORE_CSAT)->max, 5);
    ck_assert_str_eq(score_kind(SCORE_CES)->name, "ces");
    ck_assert_int_eq(score_kind(SCORE_CES)->max, 7);
    ck_assert_ptr_null(score_kind(SCORE_KINDS));
    ck_assert_ptr_null(score_kind(-1));
    ck_assert(scored_type("feedback") && scored_type("review") && scored_type("support_call"));
    ck_assert(!scored_type("purchase") && !scored_type("complaint") && !scored_type(NULL));
}
END_TEST

START_TEST(test_interaction_empty_object)
{
    struct ir_run r;
    ir_run(&r, "{}", "");
    ck_assert(!r.ok);
    ck_assert_msg(json_array_size(r.errs) == 6, "got [%s]", pointers(r.errs));
    has_error(r.errs, "/customer_id");
    has_error(r.errs, "/source");
    has_error(r.errs, "/external_id");
    has_error(r.errs, "/channel");
    has_error(r.errs, "/type");
    has_error(r.errs, "/occurred_at");
    ir_done(&r);
}
END_TEST

START_TEST(test_interaction_prefix)
{
    struct ir_run r;
    ir_run(&r,
           "{\"identifiers\": [{\"kind\": \"email\", \"value\": \"a@b.co\"},"
           "                  {\"kind\": \"email\", \"value\": \"bad\"}],"
           " \"source\": \"s\", \"external_id\": \"e\", \"channel\": \"fax\","
           " \"type\": \"visit\", \"occurred_at\": \"2026-01-01T00:00:00Z\","
           " \"amount\": \"1.23456\", \"tags\": [\"ok\", 1], \"bogus\": 1}",
           "/items/3");
    ck_assert(!r.ok);
    ck_assert_msg(json_array_size(r.errs) == 6, "got [%s]", pointers(r.errs));
    has_error(r.errs, "/items/3/bogus");
    has_error(r.errs, "/items/3/identifiers/1/value");
    has_error(r.errs, "/items/3/channel");
    has_error(r.errs, "/items/3/amount");
    has_error(r.errs, "/items/3/currency");
    has_error(r.errs, "/items/3/tags/1");
    ir_done(&r);

    ir_run(&r, "[1, 2]", "/items/7");
    ck_assert(!r.ok);
    ck_assert_str_eq(only_error(r.errs, "/items/7"), "interaction must be a JSON object");
    ir_done(&r);

    ir_run(&r, "{" BASE "}", "/items/0");
    ck_assert(!r.ok);
    only_error(r.errs, "/items/0/customer_id");
    ir_done(&r);
}
END_TEST

/* ---- validate_batch_envelope --------------------------------------------- */

START_TEST(test_batch_envelope)
{
    json_t *body, *errs, *items, *arr;

    body = J("{\"items\": [{}]}");
    errs = json_array();
    items = NULL;
    ck_assert(validate_batch_envelope(body, &items, errs));
    ck_assert_ptr_eq(items, json_object_get(body, "items"));
    ck_assert_uint_eq(json_array_size(errs), 0);
    json_decref(errs);
    json_decref(body);

    static const char *const bad[] = {"{\"items\": []}", "{}", "{\"items\": {}}",
                                      "{\"items\": null}", "{\"items\": \"x\"}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        body = J(bad[i]);
        errs = json_array();
        items = NULL;
        ck_assert_msg(!validate_batch_envelope(body, &items, errs), "accepted %s", bad[i]);
        ck_assert_str_eq(only_error(errs, "/items"),
                         "'items' must be an array of 1 to 1000 interactions");
        ck_assert_ptr_null(items);
        json_decref(errs);
        json_decref(body);
    }

    body = J("{\"items\": [{}], \"extra\": 1}");
    errs = json_array();
    ck_assert(!validate_batch_envelope(body, &items, errs));
    only_error(errs, "/extra");
    json_decref(errs);
    json_decref(body);

    arr = json_array();
    for (int i = 0; i < MAX_BATCH_ITEMS; i++)
        json_array_append_new(arr, json_object());
    body = json_pack("{s:o}", "items", arr);
    errs = json_array();
    ck_assert(validate_batch_envelope(body, &items, errs)); /* 1000 */
    ck_assert_uint_eq(json_array_size(items), 1000);
    json_array_append_new(arr, json_object());
    items = NULL;
    ck_assert(!validate_batch_envelope(body, &items, errs)); /* 1001 */
    only_error(errs, "/items");
    ck_assert_ptr_null(items);
    json_decref(errs);
    json_decref(body);
}
END_TEST

/* ---- money_text ---------------------------------------------------------- */

static const char *money(json_t *v, bool expect_ok)
{
    static char out[32];
    const char *why = NULL;
    bool ok;
    strcpy(out, "(untouched)");
    ok = money_text(v, out, sizeof(out), &why);
    json_decref(v);
    if (expect_ok) {
        ck_assert_msg(ok, "rejected: %s", why ? why : "?");
        return out;
    }
    ck_assert_msg(!ok, "accepted as %s", out);
    ck_assert_ptr_nonnull(why);
    return why;
}

START_TEST(test_money_numbers)
{
    ck_assert_str_eq(money(json_integer(0), true), "0");
    ck_assert_str_eq(money(json_integer(10), true), "10");
    ck_assert_str_eq(money(json_integer(999999999999LL), true), "999999999999");
    ck_assert_str_eq(money(json_integer(1000000000000LL), false), "must be >= 0 and < 1e12");
    ck_assert_str_eq(money(json_integer(-1), false), "must be >= 0 and < 1e12");
    ck_assert_str_eq(money(json_real(59.9), true), "59.9000");
    ck_assert_str_eq(money(json_real(0.0), true), "0.0000");
    ck_assert_str_eq(money(json_real(2.5), true), "2.5000");
    ck_assert_str_eq(money(json_real(0.12345), true), "0.1235"); /* rounded to 4 decimals */
    ck_assert_str_eq(money(json_real(0.00001), true), "0.0000");
    ck_assert_str_eq(money(json_real(123456789012.5), true), "123456789012.5000");
    ck_assert_str_eq(money(json_real(999999999999.9999), true), "999999999999.9999");
    ck_assert_str_eq(money(json_real(1e12), false), "must be >= 0 and < 1e12");
    ck_assert_str_eq(money(json_real(1e300), false), "must be >= 0 and < 1e12");
    ck_assert_str_eq(money(json_real(-0.0001), false), "must be >= 0 and < 1e12");
}
END_TEST

START_TEST(test_money_negative_zero)
{
    /* JSON -0.0 parses as a real negative zero; it passes the ">= 0" test and
     * must still produce canonical, sign-less text. */
    char text[32];
    json_t *v = J("[-0.0]");
    snprintf(text, sizeof(text), "%s", money(json_incref(json_array_get(v, 0)), true));
    json_decref(v); /* before asserting, so a failure leaks nothing under CK_FORK=no */
    ck_assert_str_eq(text, "0.0000");
}
END_TEST

START_TEST(test_money_strings)
{
    static const char *const good[] = {"12.50", "0", "0.0", "7", "1.2345", "000000000012",
                                       "999999999999.9999", "123456789012"};
    static const char *const bad[] = {"",        "abc",  "12.",    ".5",    "1.23456",
                                      "-1",      "+1",   "1e3",    "1.2.3", " 1",
                                      "1 ",      "1,5",  "1234567890123", "0x10",
                                      "\xd9\xa1", "12.5a"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        ck_assert_str_eq(money(json_string(good[i]), true), good[i]);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_str_eq(money(json_string(bad[i]), false),
                         "must be a decimal string like \"12.50\" (up to 12 integer and 4 fraction "
                         "digits)");
}
END_TEST

START_TEST(test_money_other_types)
{
    ck_assert_str_eq(money(json_true(), false), "must be a number or a decimal string");
    ck_assert_str_eq(money(json_null(), false), "must be a number or a decimal string");
    ck_assert_str_eq(money(json_array(), false), "must be a number or a decimal string");
    ck_assert_str_eq(money(json_object(), false), "must be a number or a decimal string");
}
END_TEST

/* ---- identifiers_to_json ------------------------------------------------- */

START_TEST(test_identifiers_to_json)
{
    struct identifier_list ids;
    char err[128];
    json_t *got, *want;

    memset(&ids, 0, sizeof(ids));
    got = identifiers_to_json(&ids);
    ck_assert(json_is_array(got));
    ck_assert_uint_eq(json_array_size(got), 0);
    json_decref(got);

    ck_assert(identifier_normalize(ID_EMAIL, NULL, "Ann@X.io", &ids.items[0], err, sizeof(err), NULL));
    ck_assert(identifier_normalize(ID_EXTERNAL, "Shop", "C-1", &ids.items[1], err, sizeof(err), NULL));
    ck_assert(identifier_normalize(ID_LOYALTY_CARD, NULL, "ab 1", &ids.items[2], err, sizeof(err),
                                   NULL));
    ck_assert(identifier_normalize(ID_LOYALTY_CARD, "Gold", "ab 2", &ids.items[3], err, sizeof(err),
                                   NULL));
    ck_assert(identifier_normalize(ID_PHONE, NULL, "+1 415 555 2671", &ids.items[4], err,
                                   sizeof(err), NULL));
    ids.count = 5;
    got = identifiers_to_json(&ids);
    want = J("[{\"kind\": \"email\", \"value\": \"ann@x.io\"},"
             " {\"kind\": \"external\", \"namespace\": \"shop\", \"value\": \"C-1\"},"
             " {\"kind\": \"loyalty_card\", \"value\": \"AB1\"},"
             " {\"kind\": \"loyalty_card\", \"namespace\": \"gold\", \"value\": \"AB2\"},"
             " {\"kind\": \"phone\", \"value\": \"+14155552671\"}]");
    if (!json_equal(got, want)) {
        char *s = json_dumps(got, JSON_COMPACT);
        ck_assert_msg(0, "identifiers_to_json gave %s", s);
        free(s);
    }
    ck_assert_ptr_null(json_object_get(json_array_get(got, 0), "namespace"));
    json_decref(got);
    json_decref(want);
}
END_TEST

/* What the database gets: "raw" only where normalising changed more than case
 * and surrounding white space (the block list is checked on both). */
START_TEST(test_identifiers_to_db_json)
{
    struct identifier_list ids;
    char err[128];
    json_t *got, *want;

    memset(&ids, 0, sizeof(ids));
    ck_assert(identifier_normalize(ID_EMAIL, NULL, " Ann@X.io ", &ids.items[0], err, sizeof(err),
                                   NULL));
    ck_assert(identifier_normalize(ID_LOYALTY_CARD, NULL, "-1", &ids.items[1], err, sizeof(err),
                                   NULL));
    ck_assert(identifier_normalize(ID_PHONE, NULL, "+1 415 555 2671", &ids.items[2], err,
                                   sizeof(err), NULL));
    ck_assert(identifier_normalize(ID_DEVICE, NULL, "NaN", &ids.items[3], err, sizeof(err),
                                   NULL));
    ids.count = 4;
    ck_assert(!identifier_raw_differs(&ids.items[0]));
    ck_assert(identifier_raw_differs(&ids.items[1]));
    ck_assert(identifier_raw_differs(&ids.items[2]));
    ck_assert(!identifier_raw_differs(&ids.items[3]));
    got = identifiers_to_db_json(&ids);
    want = J("[{\"kind\": \"email\", \"value\": \"ann@x.io\"},"
             " {\"kind\": \"loyalty_card\", \"value\": \"1\", \"raw\": \"-1\"},"
             " {\"kind\": \"phone\", \"value\": \"+14155552671\", \"raw\": \"+1 415 555 2671\"},"
             " {\"kind\": \"device\", \"value\": \"NaN\"}]");
    if (!json_equal(got, want)) {
        char *s = json_dumps(got, JSON_COMPACT);
        ck_assert_msg(0, "identifiers_to_db_json gave %s", s);
        free(s);
    }
    json_decref(got);
    json_decref(want);
    ids.items[0].raw = NULL; /* built without identifier_normalize */
    ck_assert(!identifier_raw_differs(&ids.items[0]));
}
END_TEST

/* ---- problem ------------------------------------------------------------- */

START_TEST(test_problem_new)
{
    json_t *p = problem_new(PROBLEM_NOT_FOUND, "no customer 42", "/v1/customers/42");
    ck_assert_str_eq(json_string_value(json_object_get(p, "type")), "urn:crm:problem:not-found");
    ck_assert(json_is_integer(json_object_get(p, "status")));
    ck_assert_int_eq(json_integer_value(json_object_get(p, "status")), 404);
    ck_assert_str_eq(json_string_value(json_object_get(p, "title")), "Not found");
    ck_assert_str_eq(json_string_value(json_object_get(p, "detail")), "no customer 42");
    ck_assert_str_eq(json_string_value(json_object_get(p, "instance")), "/v1/customers/42");
    ck_assert_uint_eq(json_object_size(p), 5);
    json_decref(p);

    p = problem_new(PROBLEM_SERVICE_UNAVAILABLE, NULL, NULL);
    ck_assert_str_eq(json_string_value(json_object_get(p, "type")),
                     "urn:crm:problem:service-unavailable");
    ck_assert_int_eq(json_integer_value(json_object_get(p, "status")), 503);
    ck_assert_ptr_null(json_object_get(p, "detail"));
    ck_assert_ptr_null(json_object_get(p, "instance"));
    ck_assert_uint_eq(json_object_size(p), 3);
    json_decref(p);
}
END_TEST

START_TEST(test_problem_catalogue)
{
    static const struct {
        enum problem_kind kind;
        int status;
        const char *slug;
    } t[] = {
        {PROBLEM_MALFORMED_JSON, 400, "malformed-json"},
        {PROBLEM_INVALID_UTF8, 400, "invalid-utf8"},
        {PROBLEM_INVALID_UUID, 400, "invalid-uuid"},
        {PROBLEM_INVALID_QUERY, 400, "invalid-query"},
        {PROBLEM_NOT_FOUND, 404, "not-found"},
        {PROBLEM_METHOD_NOT_ALLOWED, 405, "method-not-allowed"},
        {PROBLEM_PAYLOAD_TOO_LARGE, 413, "payload-too-large"},
        {PROBLEM_HEADERS_TOO_LARGE, 431, "request-head-too-large"},
        {PROBLEM_INVALID_HEADER, 400, "invalid-header"},
        {PROBLEM_UNSUPPORTED_MEDIA_TYPE, 415, "unsupported-media-type"},
        {PROBLEM_VALIDATION_FAILED, 422, "validation-failed"},
        {PROBLEM_MODEL_NOT_FITTED, 422, "model-not-fitted"},
        {PROBLEM_SERVICE_UNAVAILABLE, 503, "service-unavailable"},
        {PROBLEM_INTERNAL, 500, "internal-error"},
    };
    for (int k = 0; k < PROBLEM_KIND_COUNT; k++) { /* every kind, including newer ones */
        char type[80];
        json_t *p = problem_new((enum problem_kind)k, NULL, NULL);
        ck_assert_ptr_nonnull(problem_slug((enum problem_kind)k));
        ck_assert_int_ge(problem_status((enum problem_kind)k), 400);
        ck_assert_int_le(problem_status((enum problem_kind)k), 599);
        snprintf(type, sizeof(type), "urn:crm:problem:%s", problem_slug((enum problem_kind)k));
        ck_assert_str_eq(json_string_value(json_object_get(p, "type")), type);
        ck_assert_ptr_nonnull(json_string_value(json_object_get(p, "title")));
        json_decref(p);
    }
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        char type[80];
        json_t *p = problem_new(t[i].kind, "d", NULL);
        ck_assert_int_eq(problem_status(t[i].kind), t[i].status);
        ck_assert_str_eq(problem_slug(t[i].kind), t[i].slug);
        snprintf(type, sizeof(type), "urn:crm:problem:%s", t[i].slug);
        ck_assert_str_eq(json_string_value(json_object_get(p, "type")), type);
        ck_assert_int_eq(json_integer_value(json_object_get(p, "status")), t[i].status);
        ck_assert_ptr_nonnull(json_string_value(json_object_get(p, "title")));
        json_decref(p);
    }
}
END_TEST

START_TEST(test_problem_validation)
{
    json_t *errs = json_array(), *p;
    verr_add(errs, "", "channel", "unknown channel '%s'", "fax");
    p = problem_validation(errs, "/v1/interactions"); /* steals errs */
    ck_assert_str_eq(json_string_value(json_object_get(p, "type")),
                     "urn:crm:problem:validation-failed");
    ck_assert_int_eq(json_integer_value(json_object_get(p, "status")), 422);
    ck_assert_str_eq(json_string_value(json_object_get(p, "title")), "Request validation failed");
    ck_assert_str_eq(json_string_value(json_object_get(p, "detail")), "1 field is invalid");
    ck_assert_str_eq(json_string_value(json_object_get(p, "instance")), "/v1/interactions");
    ck_assert_ptr_eq(json_object_get(p, "errors"), errs);
    ck_assert_str_eq(only_error(errs, "/channel"), "unknown channel 'fax'");
    json_decref(p);

    errs = json_array();
    verr_add(errs, "", "a", "x");
    verr_add(errs, "", "b", "y");
    p = problem_validation(errs, NULL);
    ck_assert_str_eq(json_string_value(json_object_get(p, "detail")), "2 fields are invalid");
    ck_assert_ptr_null(json_object_get(p, "instance"));
    ck_assert_uint_eq(json_array_size(json_object_get(p, "errors")), 2);
    json_decref(p);
}
END_TEST

static const char *last_pointer(json_t *errs)
{
    return json_string_value(json_object_get(json_array_get(errs, json_array_size(errs) - 1),
                                             "pointer"));
}

/* The errors of one value-settings PATCH body (JSON text), as "pointer"
 * strings joined by spaces. */
static char *settings_errors(const char *body_text)
{
    static char out[512];
    json_t *body = json_loads(body_text, 0, NULL), *errors = json_array(), *e;
    size_t i;
    out[0] = '\0';
    validate_value_settings_patch(body, errors);
    json_array_foreach(errors, i, e) {
        strncat(out, i ? " " : "", sizeof(out) - strlen(out) - 1);
        strncat(out, json_string_value(json_object_get(e, "pointer")),
                sizeof(out) - strlen(out) - 1);
    }
    json_decref(body);
    json_decref(errors);
    return out;
}

START_TEST(test_value_settings_patch)
{
    ck_assert_str_eq(settings_errors("{\"clv_horizon_weeks\": 39, \"clv_margin\": 0.3, "
                                     "\"base_currency\": \"USD\"}"), "");
    ck_assert_str_eq(settings_errors("{\"tier_mvc_fraction\": 0, \"tier_bz_return_ratio\": 100,"
                                     " \"value_snapshot_retention_days\": 1}"), "");
    ck_assert_str_eq(settings_errors("{}"), "/");  /* reported on the body itself */
    ck_assert_str_eq(settings_errors("{\"clv_horizon_weeks\": 39.5}"), "/clv_horizon_weeks");
    ck_assert_str_eq(settings_errors("{\"clv_horizon_weeks\": 0}"), "/clv_horizon_weeks");
    ck_assert_str_eq(settings_errors("{\"clv_horizon_weeks\": \"52\"}"), "/clv_horizon_weeks");
    ck_assert_str_eq(settings_errors("{\"clv_margin\": 1.5}"), "/clv_margin");
    ck_assert_str_eq(settings_errors("{\"clv_margin\": null}"), "/clv_margin");
    ck_assert_str_eq(settings_errors("{\"base_currency\": \"usd\"}"), "/base_currency");
    ck_assert_str_eq(settings_errors("{\"base_currency\": \"EURO\"}"), "/base_currency");
    ck_assert_str_eq(settings_errors("{\"base_currency\": 978}"), "/base_currency");
    ck_assert_str_eq(settings_errors("{\"discount\": 1, \"tier_mgc_min_p_alive\": -0.1}"),
                     "/discount /tier_mgc_min_p_alive");
    /* every setting in the table is accepted at its bounds */
    for (int i = 0; VALUE_SETTINGS[i].name != NULL; i++) {
        char body[160];
        if (VALUE_SETTINGS[i].kind == VS_CURRENCY)
            snprintf(body, sizeof(body), "{\"%s\": \"CHF\"}", VALUE_SETTINGS[i].name);
        else
            snprintf(body, sizeof(body), "{\"%s\": %g}", VALUE_SETTINGS[i].name,
                     VALUE_SETTINGS[i].max);
        ck_assert_msg(settings_errors(body)[0] == '\0', "%s", body);
    }
}
END_TEST

static char *fx_errors(const char *body_text)
{
    static char out[512];
    json_t *body = json_loads(body_text, 0, NULL), *errors = json_array(), *e;
    size_t i;
    out[0] = '\0';
    validate_fx_rates(body, errors);
    json_array_foreach(errors, i, e) {
        strncat(out, i ? " " : "", sizeof(out) - strlen(out) - 1);
        strncat(out, json_string_value(json_object_get(e, "pointer")),
                sizeof(out) - strlen(out) - 1);
    }
    json_decref(body);
    json_decref(errors);
    return out;
}

START_TEST(test_fx_rates)
{
    ck_assert_str_eq(fx_errors("{\"rates\": [{\"currency\": \"USD\", \"valid_from\": "
                               "\"2026-01-01\", \"rate\": 0.92}, {\"currency\": \"USD\", "
                               "\"valid_from\": \"2025-01-01\", \"rate\": null}, "
                               "{\"currency\": \"JPY\", \"valid_from\": \"2025-01-01\", "
                               "\"rate\": 1000000000}]}"), "");
    ck_assert_str_eq(fx_errors("{}"), "/rates");
    ck_assert_str_eq(fx_errors("{\"rates\": []}"), "/rates");
    ck_assert_str_eq(fx_errors("{\"rates\": {}, \"x\": 1}"), "/x /rates");
    ck_assert_str_eq(fx_errors("{\"rates\": [7, {\"currency\": \"usd\", \"valid_from\": "
                               "\"2025-02-30\", \"rate\": 0, \"y\": 1}]}"),
                     "/rates/0 /rates/1/y /rates/1/currency /rates/1/valid_from /rates/1/rate");
    ck_assert_str_eq(fx_errors("{\"rates\": [{\"currency\": \"USD\", \"valid_from\": "
                               "\"2025-01-01\"}, {\"currency\": \"USD\", \"valid_from\": "
                               "\"2025-01-01\", \"rate\": \"1\"}, {\"currency\": \"USD\", "
                               "\"valid_from\": \"2025-01-01\", \"rate\": 1e10}]}"),
                     "/rates/0/rate /rates/1/rate /rates/1 /rates/2/rate /rates/2");
}
END_TEST

START_TEST(test_verr_add_pointers)
{
    json_t *errs = json_array();
    verr_add(errs, "", "foo", "d");
    ck_assert_str_eq(last_pointer(errs), "/foo");
    verr_add(errs, NULL, "foo", "d");
    ck_assert_str_eq(last_pointer(errs), "/foo");
    verr_add(errs, "/traits", "a~b", "d");
    ck_assert_str_eq(last_pointer(errs), "/traits/a~0b");
    verr_add(errs, "/traits", "a/b", "d");
    ck_assert_str_eq(last_pointer(errs), "/traits/a~1b");
    verr_add(errs, "/x", "~/~/", "d");
    ck_assert_str_eq(last_pointer(errs), "/x/~0~1~0~1");
    verr_add(errs, "/x", "~1", "d"); /* already-looking-escaped text is escaped again */
    ck_assert_str_eq(last_pointer(errs), "/x/~01");
    verr_add(errs, "/items/3", NULL, "d");
    ck_assert_str_eq(last_pointer(errs), "/items/3");
    verr_add(errs, "", NULL, "d");
    ck_assert_str_eq(last_pointer(errs), "");
    verr_add(errs, "", "", "d");
    ck_assert_str_eq(last_pointer(errs), "/");
    verr_add(errs, "/items/0", "caf\xc3\xa9", "%d-%s", 7, "x");
    ck_assert_str_eq(last_pointer(errs), "/items/0/caf\xc3\xa9");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(errs, 9), "detail")), "7-x");
    ck_assert_uint_eq(json_array_size(errs), 10);
    json_decref(errs);
}
END_TEST

START_TEST(test_verr_add_truncation)
{
    json_t *errs = json_array();
    char *key = repeat("\xc3\xa9", 600);   /* 1200 bytes */
    char *slashes = repeat("/", 600);
    const char *p, *d;
    verr_add(errs, "/t", key, "%s", key);
    p = last_pointer(errs);
    d = json_string_value(json_object_get(json_array_get(errs, 0), "detail"));
    ck_assert_ptr_nonnull(p);
    ck_assert_ptr_nonnull(d);
    ck_assert_uint_lt(strlen(p), 512);
    ck_assert_uint_lt(strlen(d), 512);
    ck_assert_uint_gt(strlen(p), 400);
    ck_assert(utf8_valid(p, strlen(p)));
    ck_assert(utf8_valid(d, strlen(d)));
    ck_assert_int_eq(strncmp(p, "/t/\xc3\xa9", 5), 0);

    verr_add(errs, "", slashes, "d");
    p = last_pointer(errs);
    ck_assert_uint_lt(strlen(p), 512);
    ck_assert_int_eq(p[0], '/');
    /* never ends with half an escape */
    ck_assert_int_eq(p[strlen(p) - 1], '1');
    json_decref(errs);
    free(key);
    free(slashes);
}
END_TEST

static Suite *validate_suite(void)
{
    Suite *s = suite_create("validate");
    TCase *tc;

    tc = tcase_create("resolve");
    tcase_add_test(tc, test_resolve_ok);
    tcase_add_test(tc, test_resolve_no_traits);
    tcase_add_test(tc, test_resolve_unknown_field);
    tcase_add_test(tc, test_resolve_bad_identifier);
    tcase_add_test(tc, test_resolve_identifier_shapes);
    tcase_add_test(tc, test_resolve_identifier_count);
    tcase_add_test(tc, test_resolve_source);
    tcase_add_test(tc, test_resolve_several_errors);
    suite_add_tcase(s, tc);

    tc = tcase_create("traits");
    tcase_add_test(tc, test_traits_unknown_and_birthday);
    tcase_add_test(tc, test_traits_strings);
    tcase_add_test(tc, test_traits_objects);
    tcase_add_test(tc, test_traits_request);
    suite_add_tcase(s, tc);

    tc = tcase_create("interaction");
    tcase_add_test(tc, test_interaction_full);
    tcase_add_test(tc, test_interaction_minimal);
    tcase_add_test(tc, test_interaction_by_identifiers);
    tcase_add_test(tc, test_interaction_money);
    tcase_add_test(tc, test_interaction_customer_choice);
    tcase_add_test(tc, test_interaction_enums_and_types);
    tcase_add_test(tc, test_interaction_occurred_at);
    tcase_add_test(tc, test_interaction_strings_and_unknown);
    tcase_add_test(tc, test_interaction_tags);
    tcase_add_test(tc, test_interaction_empty_object);
    tcase_add_test(tc, test_scores_ok);
    tcase_add_test(tc, test_scores_errors);
    tcase_add_test(tc, test_scores_several_and_prefix);
    tcase_add_test(tc, test_interaction_prefix);
    tcase_add_test(tc, test_batch_envelope);
    suite_add_tcase(s, tc);

    tc = tcase_create("money");
    tcase_add_test(tc, test_money_numbers);
    tcase_add_test(tc, test_money_negative_zero);
    tcase_add_test(tc, test_money_strings);
    tcase_add_test(tc, test_money_other_types);
    suite_add_tcase(s, tc);

    tc = tcase_create("output");
    tcase_add_test(tc, test_identifiers_to_json);
    tcase_add_test(tc, test_identifiers_to_db_json);
    tcase_add_test(tc, test_problem_new);
    tcase_add_test(tc, test_problem_catalogue);
    tcase_add_test(tc, test_problem_validation);
    tcase_add_test(tc, test_verr_add_pointers);
    tcase_add_test(tc, test_verr_add_truncation);
    tcase_add_test(tc, test_value_settings_patch);
    tcase_add_test(tc, test_fx_rates);
    suite_add_tcase(s, tc);

    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(validate_suite());
    int failed;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
