DROP TABLE [#subsync_activity_1]
