SELECT (SELECT count(*) AS count_1
FROM [#subsync_activity_1]
WHERE NOT (EXISTS (SELECT *
FROM [#subsync_records_1], dbo.[CUS_ACTIVITY]
WHERE [#subsync_records_1].event_id = [#subsync_activity_1].event_id AND [#subsync_records_1].stale = 0 AND dbo.[CUS_ACTIVITY].[CUS_ACTIVITY_ID] = [#subsync_records_1].activity_id AND NOT (NOT EXISTS (SELECT dbo.[CUS_ACTIVITY].[MASTER_CUSTOMER_ID] INTERSECT SELECT [#subsync_activity_1].[MASTER_CUSTOMER_ID]) OR NOT EXISTS (SELECT dbo.[CUS_ACTIVITY].[SUB_CUSTOMER_ID] INTERSECT SELECT [#subsync_activity_1].[SUB_CUSTOMER_ID]) OR NOT EXISTS (SELECT dbo.[CUS_ACTIVITY].[SUBSYSTEM] INTERSECT SELECT [#subsync_activity_1].[SUBSYSTEM]) OR NOT EXISTS (SELECT dbo.[CUS_ACTIVITY].[ACTIVITY_CODE] INTERSECT SELECT [#subsync_activity_1].[ACTIVITY_CODE]) OR NOT EXISTS (SELECT dbo.[CUS_ACTIVITY].[ACTIVITY_SUBCODE] INTERSECT SELECT [#subsync_activity_1].[ACTIVITY_SUBCODE]) OR NOT EXISTS (SELECT dbo.[CUS_ACTIVITY].[ACTIVITY_DATE] INTERSECT SELECT [#subsync_activity_1].[ACTIVITY_DATE]) OR NOT EXISTS (SELECT dbo.[CUS_ACTIVITY].[ACTIVITY_TEXT] INTERSECT SELECT [#subsync_activity_1].[ACTIVITY_TEXT]))))) AS missing, (SELECT count(*) AS count_2
FROM [#subsync_records_1] JOIN dbo.[CUS_ACTIVITY] ON dbo.[CUS_ACTIVITY].[CUS_ACTIVITY_ID] = [#subsync_records_1].activity_id
WHERE [#subsync_records_1].stale = 1) AS extra, (SELECT count(*) - count(DISTINCT [#subsync_records_1].event_id) AS anon_1
FROM [#subsync_records_1] JOIN dbo.[CUS_ACTIVITY] ON dbo.[CUS_ACTIVITY].[CUS_ACTIVITY_ID] = [#subsync_records_1].activity_id
WHERE [#subsync_records_1].stale = 0) AS duplicated
