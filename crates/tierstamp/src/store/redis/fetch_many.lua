-- Several look-ups in one round trip: fetch.lua for each item.
-- KEYS: entry_1, gens of item 1..., entry_2, gens of item 2...; all in one slot.
-- ARGV[i]: the number of generation keys of item i.
-- Returns, flattened: entry_i | false, then item i's generations as strings.
return read_items(1, 1)
