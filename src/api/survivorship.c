/*
 * survivorship: GET and PUT /v1/settings/survivorship (admin), the rules
 * that decide which source's value of a trait is the trait (docs/identity.md,
 * "Survivorship"). A PUT replaces the whole set: it is validated here
 * (src/survivorship.c: rule names, trait names, source lists), then the
 * database stores it, resolves again every trait whose rule changed on
 * every customer, set-based, in the same transaction, and audits the change
 * (settings.survivorship.changed).
 */
#include <stdlib.h>

#include "auth.h"
#include "handlers.h"
#include "store.h"
#include "survivorship.h"

void handle_survivorship(struct app *app, const struct request *req, struct response *res)
{
    json_t *errors, *out = NULL;
    char err[API_ERR_LEN], *doc;
    const char *params[3];
    enum db_status st;
    if (req->match->route == ROUTE_SURVIVORSHIP_GET) {
        st = store_call(app->pool, STMT_SURVIVORSHIP_GET, 0, NULL, &out, err, sizeof(err));
    } else {
        errors = json_array();
        if (!validate_survivorship(req->body, errors)) {
            respond_validation(res, errors, req->path);
            return;
        }
        json_decref(errors);
        doc = json_dumps(req->body, JSON_COMPACT);
        params[0] = doc;
        params[1] = req->who->key_id;
        params[2] = role_name(req->who->role);
        st = store_call(app->pool, STMT_SURVIVORSHIP_PUT, 3, params, &out, err, sizeof(err));
        free(doc);
    }
    if (st != DB_OK)
        respond_db_failure(res, st, err, req->path);
    else
        respond_json(res, 200, out);
}
