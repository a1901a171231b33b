DROP TABLE [#subsync_records_1]
