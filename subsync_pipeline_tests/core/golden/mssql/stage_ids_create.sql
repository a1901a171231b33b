CREATE TABLE [#subsync_ids_1] (
	activity_id BIGINT NOT NULL,
	PRIMARY KEY (activity_id)
)
