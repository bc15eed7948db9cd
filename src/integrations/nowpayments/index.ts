export { readIpn, PAYMENT_STATUSES, type Ipn, type IpnStatus, type IpnReading } from './ipn.ts';
export { canonicalIpnJson, signIpn, signatureMatches } from './signature.ts';
export {
  createNowPaymentsApi,
  readPayment,
  NOWPAYMENTS_API_KEY_HEADER,
  type ApiPayment,
  type NowPaymentsApi,
  type NowPaymentsApiOptions,
  type PaymentLookup,
} from './api.ts';
