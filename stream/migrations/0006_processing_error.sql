-- SPEC section 10: a valid event whose processing fails on its own data is isolated from its
-- batch and dead-lettered with the reason `processing_error` (stream/pipeline.py); the
-- reason CHECK of migration 0001 gains that code.
ALTER TABLE dead_letters DROP CONSTRAINT dead_letters_reason_check;
ALTER TABLE dead_letters ADD CONSTRAINT dead_letters_reason_check CHECK (reason IN (
    'invalid_json', 'schema_violation', 'unknown_event_type', 'conflicting_duplicate', 'duplicate_sale_id',
    'processing_error'));
