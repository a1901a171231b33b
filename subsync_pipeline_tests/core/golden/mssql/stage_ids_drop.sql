DROP TABLE [#subsync_ids_1]
