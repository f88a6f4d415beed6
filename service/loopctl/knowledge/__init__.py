"""Knowledge wiki service side (SPEC §9): the embedding model host, the review/ingest
extractor, the job runner the worker calls, and the Obsidian vault export. Business rules
(validation, tenancy, search, lint) live in SQL: functions/knowledge.sql."""
