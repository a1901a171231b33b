INSERT INTO [#subsync_ids_1] (activity_id) VALUES (?)
