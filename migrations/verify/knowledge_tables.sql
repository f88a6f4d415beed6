-- Verify loopctl:knowledge_tables on pg (fill in: select the columns of every table of this change)
select 1;
