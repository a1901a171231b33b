CREATE TABLE [#subsync_records_1] (
	event_id NVARCHAR(64) COLLATE Latin1_General_100_BIN2 NOT NULL,
	activity_id BIGINT NOT NULL,
	stale SMALLINT NOT NULL,
	PRIMARY KEY (event_id, activity_id)
)
