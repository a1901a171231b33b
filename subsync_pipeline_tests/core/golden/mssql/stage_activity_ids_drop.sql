DROP TABLE [#subsync_activity_ids_1]
