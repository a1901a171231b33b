DELETE FROM dbo.[CUS_ACTIVITY] WHERE dbo.[CUS_ACTIVITY].[CUS_ACTIVITY_ID] IN (SELECT [#subsync_records_1].activity_id
FROM [#subsync_records_1]
WHERE [#subsync_records_1].stale = 1)
