export {
  readIpn,
  IPN_SCHEMA,
  orderIdFor,
  ORDER_USER_ID_RE,
  ORDER_CHANNEL_ID_RE,
  PAYMENT_STATUSES,
  type Ipn,
  type IpnStatus,
  type IpnReading,
} from './ipn.ts';
export { canonicalIpnJson, signIpn, signatureMatches } from './signature.ts';
export {
  createNowPaymentsApi,
  readPayment,
  readInvoice,
  NOWPAYMENTS_API_KEY_HEADER,
  type ApiPayment,
  type ApiInvoice,
  type InvoiceCreation,
  type InvoiceRequest,
  type NowPaymentsApi,
  type NowPaymentsApiOptions,
  type PaymentLookup,
} from './api.ts';
