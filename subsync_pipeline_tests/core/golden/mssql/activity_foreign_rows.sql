SELECT TOP 5 [CUS_ACTIVITY].[EXT_ID]
FROM [CUS_ACTIVITY] JOIN [#subsync_activity_2] ON ([CUS_ACTIVITY].[EXT_ID] COLLATE Latin1_General_100_BIN2) = [#subsync_activity_2].event_id
WHERE NOT (EXISTS (SELECT *
FROM [#subsync_records_1]
WHERE [#subsync_records_1].activity_id = [CUS_ACTIVITY].[CUS_ACTIVITY_ID]))
