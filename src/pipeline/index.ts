export { recordIpn, REVIEW, type IntakeResult, type IntakeOutcome, type IntakeSettings } from './intake.ts';
export { getPayment, type PaymentView } from './payments.ts';
