SELECT DISTINCT [#subsync_members_1].[MASTER_CUSTOMER_ID] AS master_customer_id, [#subsync_members_1].[SUB_CUSTOMER_ID] AS sub_customer_id
FROM [#subsync_members_1] JOIN dbo.[CUSTOMER] ON [#subsync_members_1].[MASTER_CUSTOMER_ID] = dbo.[CUSTOMER].[MASTER_CUSTOMER_ID] AND [#subsync_members_1].[SUB_CUSTOMER_ID] = dbo.[CUSTOMER].[SUB_CUSTOMER_ID]
