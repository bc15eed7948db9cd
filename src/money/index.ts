export { AmountError, parseUnits, parseUnitsFloor, formatUnits, isPlainDecimal, MAX_INTEGER_DIGITS } from './amount.ts';
export { ASSET_DECIMALS, INTAKE_ASSETS, isAssetCode, decimalsOf, type AssetCode } from './assets.ts';
export { parsePercent, splitFee, type Percent, type FeeSplit } from './fee.ts';
export { splitProportionally } from './split.ts';
export { withinTolerance } from './tolerance.ts';
