-- Auditors read one organization's events in log order (the auditor API's
-- `…/audit/events`, keyset-paginated by position): without this index every
-- page would walk the whole log's order index and drop other organizations'
-- rows.
CREATE INDEX events_org_log_order ON events (org_id, transaction_id, global_position);
