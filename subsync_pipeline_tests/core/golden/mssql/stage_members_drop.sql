DROP TABLE [#subsync_members_1]
