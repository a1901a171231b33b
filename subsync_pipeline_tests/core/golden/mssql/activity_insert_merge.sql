SET NOCOUNT ON;
DECLARE @output TABLE (event_id NVARCHAR(64) COLLATE Latin1_General_100_BIN2, activity_id BIGINT);
MERGE INTO dbo.[CUS_ACTIVITY] WITH (HOLDLOCK) AS target
USING (SELECT [#subsync_activity_1].event_id AS event_id, [#subsync_activity_1].[MASTER_CUSTOMER_ID] AS [MASTER_CUSTOMER_ID], [#subsync_activity_1].[SUB_CUSTOMER_ID] AS [SUB_CUSTOMER_ID], [#subsync_activity_1].[SUBSYSTEM] AS [SUBSYSTEM], [#subsync_activity_1].[ACTIVITY_CODE] AS [ACTIVITY_CODE], [#subsync_activity_1].[ACTIVITY_SUBCODE] AS [ACTIVITY_SUBCODE], [#subsync_activity_1].[ACTIVITY_DATE] AS [ACTIVITY_DATE], [#subsync_activity_1].[ACTIVITY_TEXT] AS [ACTIVITY_TEXT]
FROM [#subsync_activity_1]
WHERE NOT (EXISTS (SELECT 1
FROM [#subsync_records_1] JOIN dbo.[CUS_ACTIVITY] ON dbo.[CUS_ACTIVITY].[CUS_ACTIVITY_ID] = [#subsync_records_1].activity_id
WHERE [#subsync_records_1].event_id = [#subsync_activity_1].event_id AND [#subsync_records_1].stale = 0))) AS stage
ON 1 = 0
WHEN NOT MATCHED BY TARGET THEN INSERT ([MASTER_CUSTOMER_ID], [SUB_CUSTOMER_ID], [SUBSYSTEM], [ACTIVITY_CODE], [ACTIVITY_SUBCODE], [ACTIVITY_DATE], [ACTIVITY_TEXT], [ADDOPER], [ADDDATE], [CONCURRENCY_ID], [ACTIVITY_SOURCE]) VALUES (stage.[MASTER_CUSTOMER_ID], stage.[SUB_CUSTOMER_ID], stage.[SUBSYSTEM], stage.[ACTIVITY_CODE], stage.[ACTIVITY_SUBCODE], stage.[ACTIVITY_DATE], stage.[ACTIVITY_TEXT], ?, ?, 0, ?)
OUTPUT stage.event_id, INSERTED.[CUS_ACTIVITY_ID] INTO @output;
SELECT event_id, activity_id FROM @output;
SET NOCOUNT OFF;
