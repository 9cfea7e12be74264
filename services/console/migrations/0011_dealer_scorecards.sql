-- Dealer scorecards and receipts analysed (issue 16): what the read model needs beyond the
-- customers' story, all from the aftersales.* topics so a replay rebuilds the same figures.

-- A receipt's dealer as intake announced it (the repair order's); the comments searchable by
-- any part of their text.
ALTER TABLE receipts ADD COLUMN dealer_id text;
CREATE INDEX receipts_returned ON receipts (returned_at DESC, receipt_id);
CREATE INDEX receipts_comments_trgm ON receipts USING gin (comments public.gin_trgm_ops);

-- A case's dealer and region as the complaints service announced them (ComplaintOpened); a
-- case that names none is attributed to the vehicle's or the customer's last visit.
ALTER TABLE complaints ADD COLUMN dealer_id text;
ALTER TABLE complaints ADD COLUMN region text;
CREATE INDEX complaints_filed ON complaints (filed_at);
CREATE INDEX visits_picked_up ON visits (picked_up_at, dealer_id);

-- Parts shipped to the dealers (PartShipped, one row per line; a shipment re-sent replaces its
-- lines) and the discrepancies reported on them (PartShipmentDiscrepancy), as the quality
-- service counts them: a line is accurate when no discrepancy names it.
CREATE TABLE shipment_lines (
    shipment_id text        NOT NULL,
    line_no     int         NOT NULL,
    dealer_id   text        NOT NULL,
    shipped_at  timestamptz NOT NULL,
    part_no     text        NOT NULL,
    category    text        NOT NULL,
    qty         int         NOT NULL,
    PRIMARY KEY (shipment_id, line_no)
);
CREATE INDEX shipment_lines_shipped ON shipment_lines (shipped_at, dealer_id);

CREATE TABLE shipment_discrepancies (
    shipment_id text        NOT NULL,
    line_no     int         NOT NULL,
    kind        text        NOT NULL,
    reported_at timestamptz NOT NULL,
    PRIMARY KEY (shipment_id, line_no, kind)
);
