-- The shortener's schema.  Embedded into the binary at build time and
-- applied at every start-up by cm_pg_migrate: in one transaction, under an
-- advisory lock, with search_path set to the schema "shortener".  Every
-- statement must therefore be idempotent.

-- Ids are leased in blocks: one nextval() hands a process the ids
-- [v, v + increment).  40 bits: ids pass through a 40-bit permutation.
CREATE SEQUENCE IF NOT EXISTS url_id_blocks
	INCREMENT BY 1000 MINVALUE 1 MAXVALUE 1099511627775 START WITH 1
	NO CYCLE;

-- One row per short link.  Times are Unix seconds; expires_at NULL means
-- never.  code uses the "C" collation: byte comparison, which is what a
-- case-sensitive code needs and the cheapest there is.  The fill factor
-- leaves room on each page so that click updates stay HOT.
CREATE TABLE IF NOT EXISTS urls (
	code       text COLLATE "C" PRIMARY KEY,
	id         bigint NOT NULL,
	long_url   text NOT NULL,
	owner      text,
	created_at bigint NOT NULL,
	expires_at bigint,
	clicks     bigint NOT NULL DEFAULT 0
) WITH (fillfactor = 85);

-- A user's links, newest first (keyset pagination).
CREATE INDEX IF NOT EXISTS urls_owner_idx
	ON urls (owner, created_at DESC, id DESC) WHERE owner IS NOT NULL;

-- The purge of expired links.
CREATE INDEX IF NOT EXISTS urls_expires_idx
	ON urls (expires_at) WHERE expires_at IS NOT NULL;
