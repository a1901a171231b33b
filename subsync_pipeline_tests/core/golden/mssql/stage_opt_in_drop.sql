DROP TABLE [#subsync_opt_in_1]
