INSERT INTO [#subsync_activity_ids_1] ([EXTERNAL_ID]) VALUES (?)
