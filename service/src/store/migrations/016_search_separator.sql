-- Search matched text spanning two fields ("a 55" in "Maria 5511..."): the fields are now joined
-- by a newline, which a search (refused with control characters) can never contain, so a match
-- lies within one field. Still one trigram index; the query repeats this exact expression.
DROP INDEX contacts_search_trgm_idx;
CREATE INDEX contacts_search_trgm_idx ON contacts
  USING gin ((coalesce(profile_name, '') || E'\n' || wa_id || E'\n' || coalesce(username, '')) gin_trgm_ops);
