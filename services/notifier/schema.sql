-- The notifier's schema.  Embedded into the binary at build time and
-- applied at every start-up by cm_pg_migrate: in one transaction, under an
-- advisory lock, with search_path set to the schema "notifier".  Every
-- statement is idempotent.  Functions name their tables with the schema,
-- since they run with the caller's search_path.
--
-- Times: *_at columns in Unix seconds, *_ms columns in Unix milliseconds.
-- Channels are numbers (services/notifier/channel.h: push 0, email 1,
-- sms 2, inapp 3); delivery statuses too (notifier.h: queued 0, sent 1,
-- failed 2, dead 3, skipped 4).

-- Ids of notifications and devices (shown as decimal strings).
CREATE SEQUENCE IF NOT EXISTS ids START WITH 1000;

CREATE TABLE IF NOT EXISTS notifications (
	id           bigint PRIMARY KEY,
	user_id      text NOT NULL,
	type         text NOT NULL,
	priority     smallint NOT NULL,
	title        text NOT NULL DEFAULT '',
	body         text NOT NULL DEFAULT '',
	data         text NOT NULL DEFAULT '{}', -- a JSON object
	tmpl         text NOT NULL DEFAULT '',
	vars         text NOT NULL DEFAULT '{}', -- a JSON object
	grp          text NOT NULL DEFAULT '',
	due_ms       bigint NOT NULL DEFAULT 0,  -- send_at, or a digest's end
	created_at   bigint NOT NULL,
	digest_state smallint NOT NULL DEFAULT 0 -- 1: the head of a digest
);

-- One row per channel of a notification: what a retry or a replay
-- touches.  next_ms: when a failed channel is tried again.
CREATE TABLE IF NOT EXISTS deliveries (
	notification_id bigint NOT NULL
		REFERENCES notifications (id) ON DELETE CASCADE,
	channel    smallint NOT NULL,
	status     smallint NOT NULL DEFAULT 0,
	attempts   int NOT NULL DEFAULT 0,
	provider   text NOT NULL DEFAULT '',
	last_error text NOT NULL DEFAULT '',
	next_ms    bigint NOT NULL DEFAULT 0,
	updated_at bigint NOT NULL,
	PRIMARY KEY (notification_id, channel)
);
CREATE INDEX IF NOT EXISTS deliveries_dead_idx
	ON deliveries (notification_id DESC) WHERE status = 3;

-- Work that must follow a commit: the relay moves each row into the Redis
-- stream of its priority (or the due-time set) and deletes it.
CREATE TABLE IF NOT EXISTS outbox (
	seq             bigserial PRIMARY KEY,
	notification_id bigint NOT NULL,
	priority        smallint NOT NULL,
	due_ms          bigint NOT NULL
);

-- Idempotency keys, per user, for 24 hours.
CREATE TABLE IF NOT EXISTS idempotency (
	user_id         text NOT NULL,
	key             text NOT NULL,
	notification_id bigint NOT NULL,
	created_at      bigint NOT NULL,
	PRIMARY KEY (user_id, key)
);

-- Every attempt of every channel.
CREATE TABLE IF NOT EXISTS delivery_log (
	id              bigserial PRIMARY KEY,
	notification_id bigint NOT NULL,
	channel         smallint NOT NULL,
	provider        text NOT NULL,
	status          text NOT NULL,
	error           text NOT NULL DEFAULT '',
	at_ms           bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS delivery_log_notification_idx
	ON delivery_log (notification_id);

-- The in-app channel: a user's inbox, newest first.
CREATE TABLE IF NOT EXISTS inbox (
	id         bigint PRIMARY KEY, -- the notification's id
	user_id    text NOT NULL,
	type       text NOT NULL,
	title      text NOT NULL,
	body       text NOT NULL,
	data       text NOT NULL DEFAULT '{}',
	read       boolean NOT NULL DEFAULT false,
	created_at bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS inbox_user_idx ON inbox (user_id, id DESC);
CREATE INDEX IF NOT EXISTS inbox_unread_idx ON inbox (user_id) WHERE NOT read;

-- What a user turned off (or on again); anything not listed is on.
CREATE TABLE IF NOT EXISTS preferences (
	user_id text NOT NULL,
	type    text NOT NULL,
	channel smallint NOT NULL,
	enabled boolean NOT NULL,
	PRIMARY KEY (user_id, type, channel)
);

-- Quiet hours in the user's time zone (minutes after local midnight).
CREATE TABLE IF NOT EXISTS quiet_hours (
	user_id   text PRIMARY KEY,
	start_min int NOT NULL,
	end_min   int NOT NULL,
	time_zone text NOT NULL
);

CREATE TABLE IF NOT EXISTS devices (
	id         bigint PRIMARY KEY,
	user_id    text NOT NULL,
	endpoint   text NOT NULL,
	platform   text NOT NULL DEFAULT '',
	created_at bigint NOT NULL,
	UNIQUE (user_id, endpoint)
);

-- Contact: the email address, the confirmed phone number, and a number
-- waiting for its code (code_hash: SHA-256 of user, NUL, code, in hex).
CREATE TABLE IF NOT EXISTS contacts (
	user_id       text PRIMARY KEY,
	email         text NOT NULL DEFAULT '',
	phone         text NOT NULL DEFAULT '',
	pending_phone text NOT NULL DEFAULT '',
	code_hash     text NOT NULL DEFAULT '',
	code_sent_at  bigint NOT NULL DEFAULT 0,
	code_attempts int NOT NULL DEFAULT 0
);

-- Digests: low-priority messages of one user, type and group within one
-- window go out as one, the head's, which counts the others.
CREATE TABLE IF NOT EXISTS digests (
	user_id  text NOT NULL,
	type     text NOT NULL,
	grp      text NOT NULL,
	head_id  bigint NOT NULL,
	until_ms bigint NOT NULL,
	count    int NOT NULL,
	PRIMARY KEY (user_id, type, grp)
);

-- Accepts a batch of sends in one statement (group commit: one
-- transaction, one WAL flush for all of them).  batch is a JSON array of
-- {"user","type","title","body","data","tmpl","vars","grp","key",
-- "priority","due_ms","channels":[n,...]}; one row comes back per element,
-- in order: its notification id, and whether its idempotency key was
-- already taken within 24 hours (then nothing was written for it).  A key
-- older than that is taken over.  Two transactions with the same key: the
-- second waits on the key's index entry and then finds it taken.
CREATE OR REPLACE FUNCTION accept(batch jsonb, now_s bigint)
RETURNS TABLE (ord int, id bigint, dup boolean)
LANGUAGE plpgsql AS $$
DECLARE
	e jsonb;
	i int := 0;
	nid bigint;
	got bigint;
	k text;
BEGIN
	FOR e IN SELECT value FROM jsonb_array_elements(batch) LOOP
		k := e->>'key';
		nid := nextval('notifier.ids');
		IF k <> '' THEN
			got := NULL;
			INSERT INTO notifier.idempotency AS t
				(user_id, key, notification_id, created_at)
			VALUES (e->>'user', k, nid, now_s)
			ON CONFLICT (user_id, key) DO UPDATE
				SET notification_id = EXCLUDED.notification_id,
				    created_at = EXCLUDED.created_at
				WHERE t.created_at <= now_s - 86400
			RETURNING t.notification_id INTO got;
			IF got IS NULL THEN
				SELECT t.notification_id INTO got
				FROM notifier.idempotency t
				WHERE t.user_id = e->>'user' AND t.key = k;
				ord := i; id := got; dup := true;
				RETURN NEXT;
				i := i + 1;
				CONTINUE;
			END IF;
		END IF;
		INSERT INTO notifier.notifications (id, user_id, type, priority,
			title, body, data, tmpl, vars, grp, due_ms, created_at)
		VALUES (nid, e->>'user', e->>'type', (e->>'priority')::smallint,
			e->>'title', e->>'body', e->>'data', e->>'tmpl',
			e->>'vars', e->>'grp', (e->>'due_ms')::bigint, now_s);
		INSERT INTO notifier.deliveries (notification_id, channel,
			updated_at)
		SELECT nid, c::smallint, now_s
		FROM jsonb_array_elements_text(e->'channels') AS c;
		INSERT INTO notifier.outbox (notification_id, priority, due_ms)
		VALUES (nid, (e->>'priority')::smallint, (e->>'due_ms')::bigint);
		ord := i; id := nid; dup := false;
		RETURN NEXT;
		i := i + 1;
	END LOOP;
END $$;

-- Replaces a user's preferences and quiet hours in one statement.  An
-- unknown time zone fails (SQLSTATE 22023) before anything changes.
CREATE OR REPLACE FUNCTION put_preferences(uid text, types text[],
	chans smallint[], enabled boolean[], qstart int, qend int, tz text)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	IF qstart <> qend THEN
		PERFORM now() AT TIME ZONE tz;
	END IF;
	DELETE FROM notifier.preferences WHERE user_id = uid;
	INSERT INTO notifier.preferences (user_id, type, channel, enabled)
	SELECT uid, t, c, en FROM unnest(types, chans, enabled) AS x (t, c, en);
	IF qstart = qend THEN
		DELETE FROM notifier.quiet_hours WHERE user_id = uid;
	ELSE
		INSERT INTO notifier.quiet_hours (user_id, start_min, end_min,
			time_zone)
		VALUES (uid, qstart, qend, tz)
		ON CONFLICT (user_id) DO UPDATE SET start_min = EXCLUDED.start_min,
			end_min = EXCLUDED.end_min, time_zone = EXCLUDED.time_zone;
	END IF;
END $$;

CREATE INDEX IF NOT EXISTS digests_head_idx ON digests (head_id);
