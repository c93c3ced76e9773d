-- The split-test variant a click was sent to (SPEC "Routing"); empty when the link has no
-- split or the click took a rule without one. Rows stored before keep the default.
ALTER TABLE clicks {on_cluster} ADD COLUMN variant String DEFAULT ''
