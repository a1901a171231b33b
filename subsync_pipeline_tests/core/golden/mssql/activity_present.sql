SELECT [#subsync_records_1].event_id
FROM [#subsync_records_1] JOIN dbo.[CUS_ACTIVITY] ON dbo.[CUS_ACTIVITY].[CUS_ACTIVITY_ID] = [#subsync_records_1].activity_id
WHERE [#subsync_records_1].stale = 0
