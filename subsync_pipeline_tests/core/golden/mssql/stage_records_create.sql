CREATE TABLE [#subsync_records_1] (
	event_id NVARCHAR(64) COLLATE DATABASE_DEFAULT NOT NULL,
	activity_id BIGINT NOT NULL,
	stale SMALLINT NULL,
	PRIMARY KEY (event_id, activity_id)
)
