/*
 * pgschema: the tables of lockcore's PostgreSQL store (store_pg.c), in the
 * schema `httplock` of the database: made by the first host that opens
 * the store, upgraded in place by a newer one, refused by an older one.
 */
#ifndef HTTPLOCK_PGSCHEMA_H
#define HTTPLOCK_PGSCHEMA_H

#include "pgconn.h"

/* Creates or upgrades the schema on the connection (outside any
 * transaction).  0, or LC_E_DB with the reason in q->err. */
int pgschema_make(struct pgconn *q);

#endif /* HTTPLOCK_PGSCHEMA_H */
