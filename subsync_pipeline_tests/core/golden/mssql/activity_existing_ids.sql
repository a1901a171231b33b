SELECT [#subsync_ids_1].activity_id
FROM [#subsync_ids_1] JOIN dbo.[CUS_ACTIVITY] ON dbo.[CUS_ACTIVITY].[CUS_ACTIVITY_ID] = [#subsync_ids_1].activity_id
