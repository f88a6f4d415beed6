-- Verify loopctl:cost_tables on pg
select tenant_id, id, name, description, created_at from app.skills where false;
select tenant_id, id, skill_id, version, prompt_text, changelog, created_at
  from app.skill_versions where false;
select tenant_id, id, seq, story_id, project_id, epic_id, agent_id, key_id, input_tokens,
       output_tokens, total_tokens, model_name, cost_millicents, phase, session_id,
       skill_version_id, tool_call_count, tests_run_count, metadata, corrects_id, root_id,
       deleted_at, deleted_by_key_id, created_at
  from app.token_usage_reports where false;
select tenant_id, scope_type, scope_id, tokens, cost_millicents, reports, updated_at
  from app.cost_totals where false;
select tenant_id, id, scope_type, scope_id, limit_millicents, limit_tokens,
       alert_threshold_pct, mode, created_by_key_id, created_at, updated_at
  from app.token_budgets where false;
select tenant_id, budget_key, level, fired_at, pct from app.budget_alerts where false;
select tenant_id, id, story_id, project_id, anomaly_type, observed_millicents, baseline_median,
       baseline_mad, robust_z, peer_scope, peer_count, detected_at, resolved_at,
       resolved_by_key_id, resolution_note
  from app.cost_anomalies where false;
