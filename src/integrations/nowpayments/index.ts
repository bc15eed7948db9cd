export { readIpn, PAYMENT_STATUSES, type Ipn, type IpnStatus, type IpnReading } from './ipn.ts';
export { canonicalIpnJson, signIpn, signatureMatches } from './signature.ts';
