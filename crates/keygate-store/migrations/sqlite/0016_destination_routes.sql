-- keygate store, version 16: an address-book entry names its route, the network and the
-- destination type the venue routes the funds by (keygate_core::route::Route). The same address
-- on another network, or as an internal transfer, is another entry.
-- Keep in step with migrations/postgres/0016_destination_routes.sql: same tables, same columns.

-- `via`: chain, email, phone, uid or account; `network`: the venue's network name, '' for the
-- venue's default; `area_code`: a phone number's, '' otherwise. Existing entries become on chain,
-- on the venue's default network: they approve a withdrawal naming no network, and no longer one
-- naming a network (fail closed; `keygate address add --network` adds that route).
ALTER TABLE destinations ADD COLUMN via TEXT NOT NULL DEFAULT 'chain';
ALTER TABLE destinations ADD COLUMN network TEXT NOT NULL DEFAULT '';
ALTER TABLE destinations ADD COLUMN area_code TEXT NOT NULL DEFAULT '';
DROP INDEX destinations_live;
CREATE UNIQUE INDEX destinations_live ON destinations (venue, asset, address, via, network, area_code)
    WHERE removed_ms IS NULL;
