-- A channel's own platform fee: null takes PLATFORM_FEE_PERCENT. A credit records the fee it used on the payment
-- (fee_percent), so a later change here, or of the setting, never touches what was credited before it.
-- The bounds are PLATFORM_FEE_PERCENT's (src/money/fee.ts parsePercent): 0 ≤ p < 100, at most 6 decimals. The scale
-- is the one written ("2.5000000" has 7 and is refused, as the setting refuses it), so nothing is rounded silently.
alter table channels add column platform_fee_percent numeric
  constraint channels_platform_fee_percent check (
    platform_fee_percent >= 0 and platform_fee_percent < 100 and scale(platform_fee_percent) <= 6
  );
