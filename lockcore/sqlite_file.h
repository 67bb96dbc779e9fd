/*
 * sqlite_file.h: the file of lockcore's SQLite store (sqlite_file.c): its
 * permissions and its schema.  Used by store_sqlite.c only.
 */
#ifndef HTTPLOCK_SQLITE_FILE_H
#define HTTPLOCK_SQLITE_FILE_H

#include <sqlite3.h>

/* The schema this code reads and writes, and the same as SQL text. */
#define SCHEMA_VERSION     5
#define SCHEMA_STR_(v)     #v
#define SCHEMA_STR(v)      SCHEMA_STR_(v)
#define SCHEMA_VERSION_SQL SCHEMA_STR(SCHEMA_VERSION)

/*
 * Creates the schema if absent, or upgrades versions 1 to 4 to 5, in one
 * transaction.  Another version is left for the caller to refuse.
 * 0, or -1 with *why set.
 */
int make_schema(sqlite3 *db, const char **why);

/*
 * Creates the database file at `path` if it does not exist, readable by
 * its owner (and group, in a group-writable directory) only, and takes
 * every permission of other users from the files that exist.  0, or -1
 * with *why set.
 */
int secure_files(const char *path, const char **why);

#endif /* HTTPLOCK_SQLITE_FILE_H */
