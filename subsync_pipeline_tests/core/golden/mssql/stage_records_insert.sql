INSERT INTO [#subsync_records_1] (event_id, activity_id, stale) VALUES (?, ?, ?)
