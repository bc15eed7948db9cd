export {
  upsertChannel,
  getChannel,
  listSupportedPairs,
  channelInputSchema,
  ChannelInputError,
  CHANNEL_ID_RE,
  type Channel,
  type ChannelInput,
} from './registry.ts';
export { checkAddress, ADDRESS_FORMATS, type AddressFormat } from './address.ts';
export { channelLockKey, lockChannelForCredit, lockChannelForSave } from './lock.ts';
