-- Upgrade a live.room_totals created before METRICS §8 (no distinct_carters, views or
-- presence span, no derived figures): ALTER TABLE adds the columns in place, the engine is
-- unchanged. Rows written before the upgrade read 0 (1970 for the span) in the new columns
-- until their room is written again; replay the input (streamproc replay, or a worker from
-- empty snapshots) where exact figures for those rooms matter. docs/sql.md.
ALTER TABLE live.room_totals
    ADD COLUMN IF NOT EXISTS distinct_carters UInt64 AFTER avg_dwell_ms,
    ADD COLUMN IF NOT EXISTS views UInt64 AFTER distinct_carters,
    ADD COLUMN IF NOT EXISTS presence_start DateTime64(3, 'UTC') AFTER views,
    ADD COLUMN IF NOT EXISTS presence_end DateTime64(3, 'UTC') AFTER presence_start,
    ADD COLUMN IF NOT EXISTS avg_viewers Float64 ALIAS if((toUnixTimestamp64Milli(presence_end) - toUnixTimestamp64Milli(presence_start)) = 0, 0, watch_ms / (toUnixTimestamp64Milli(presence_end) - toUnixTimestamp64Milli(presence_start))),
    ADD COLUMN IF NOT EXISTS avg_watch_s Float64 ALIAS if(distinct_viewers = 0, 0, watch_ms / 1000 / distinct_viewers),
    ADD COLUMN IF NOT EXISTS uv_value Decimal(18, 2) ALIAS if(distinct_viewers = 0, toDecimal64(0, 2), gmv / greatest(distinct_viewers, 1)),
    ADD COLUMN IF NOT EXISTS aov Decimal(18, 2) ALIAS if(distinct_buyers = 0, toDecimal64(0, 2), gmv / greatest(distinct_buyers, 1)),
    ADD COLUMN IF NOT EXISTS cart_conversion Float64 ALIAS if(distinct_carters = 0, 0, distinct_buyers / distinct_carters),
    ADD COLUMN IF NOT EXISTS gpm Decimal(38, 2) ALIAS if(views = 0, toDecimal128(0, 2), toDecimal128(gmv, 2) * 1000 / greatest(views, 1)),
    ADD COLUMN IF NOT EXISTS refund_rate Float64 ALIAS if(orders = 0, 0, refunds / orders);
