"""Random JSON Schemas across everyday document domains, so the model learns schemas in general.

Each domain lists candidate fields as ``"name/synonym|type|description"``; a
schema takes a random subset in a random naming style (snake_case or
camelCase), with some fields nullable and some sub-objects behind `$ref`.

Deliberately absent - reserved for a hand-written held-out test, so it measures
generalisation to unseen domains: medication prescriptions, vehicle/car service
records, book/bibliographic references, apartment/rental listings and
parcel/shipment tracking.
"""

from __future__ import annotations

import copy
import random
from typing import Any

_SUB: dict[str, list[str]] = {
    "OrderLine": ["product/item/description|product|item ordered", "quantity/qty|int|units ordered",
                  "unit_price/price_each|money|price per unit", "line_total/amount|money|quantity x unit price"],
    "LabTest": ["test_name/test|str|name of the test", "result/value|num|measured value",
                "unit/units|enum:mg/dL,mmol/L,g/L,%,U/L|unit of the result", "flag|enum:normal,high,low|flag"],
    "Dimensions": ["width_cm/width|num|width in cm", "height_cm/height|num|height in cm",
                   "depth_cm/depth|num|depth in cm"],
    "Reference": ["name/referee_name|person|referee's name", "company/employer|company|where they work",
                  "phone/phone_number|phone|how to reach them"],
    "ActionItem": ["owner/assignee|person|who does it", "task/action|text|what to do", "due_date/deadline|date|when"],
    "Expense": ["date/expense_date|date|day of the expense", "category|enum:travel,meals,lodging,supplies|kind",
                "merchant/vendor|company|where it was spent", "amount|money|amount spent"],
    "Payer": ["name/full_name|person|who pays", "email|email|payer e-mail"],
}
_DOMAINS: dict[str, list[str]] = {
    "BankTransfer": ["sender_name/payer_name|person|who sends the money", "beneficiary/recipient_name|party|who receives it",
                     "beneficiary_iban/iban|iban|recipient's IBAN", "amount/transfer_amount|money|amount sent",
                     "currency|currency|ISO currency code", "transfer_date/value_date|date|execution date",
                     "reference/payment_reference|id|reference shown to the recipient",
                     "instant/is_instant|bool|true for an instant transfer", "fee/bank_fee|money|fee charged"],
    "HotelBooking": ["guest_name/guest|person|name of the guest", "hotel/hotel_name|company|the hotel",
                     "check_in/arrival_date|date|arrival day", "check_out/departure_date|date|departure day",
                     "room_type|enum:single,double,twin,suite|room category", "guests/number_of_guests|int|people",
                     "breakfast_included|bool|whether breakfast is included", "total_price/total|money|total cost",
                     "confirmation_number/booking_ref|id|booking confirmation", "special_requests|text|requests"],
    "FlightItinerary": ["passenger/passenger_name|person|traveller", "booking_reference/pnr|code:^[A-Z0-9]{6}$|PNR",
                        "airline/carrier|company|operating airline", "flight_number|code:^[A-Z]{2}[0-9]{3,4}$|flight",
                        "departure_city/origin|city|where it leaves from", "arrival_city/destination|city|where it lands",
                        "departure_time/departs_at|datetime|local departure", "seat/seat_number|code:^[0-9]{1,2}[A-F]$|seat",
                        "cabin/travel_class|enum:economy,premium_economy,business,first|cabin class",
                        "checked_bags|int|checked bags", "fare/ticket_price|money|price paid"],
    "SupportTicket": ["ticket_id/ticket_number|id|ticket identifier", "customer/customer_name|person|who reported it",
                      "email/customer_email|email|reply address", "subject/summary|headline|one-line summary",
                      "priority|enum:low,medium,high,urgent|urgency", "opened_at/created|datetime|when it was opened",
                      "product|product|affected product", "status|enum:open,pending,resolved,closed|state",
                      "assignee/agent|person|support agent", "tags/labels|list:skill|labels",
                      "description/details|text|the problem"],
    "PurchaseOrder": ["po_number/order_number|id|purchase order number", "order_date|date|date ordered",
                      "delivery_date/deliver_by|date|requested delivery", "supplier/vendor|company|who supplies",
                      "buyer/customer|party|who orders", "items/lines|items:OrderLine|ordered lines",
                      "subtotal|money|before tax", "tax/vat|money|tax", "total/grand_total|money|order total",
                      "currency|currency|ISO code", "payment_terms|enum:net_15,net_30,net_60,prepaid|terms"],
    "Payslip": ["employee/employee_name|person|the employee", "employee_id/staff_number|id|payroll ID",
                "employer/company|company|the employer", "period_start/pay_period_start|date|first day paid",
                "period_end/pay_period_end|date|last day paid", "gross_pay/gross|money|pay before deductions",
                "income_tax/tax_withheld|money|tax deducted", "net_pay/net|money|paid out",
                "hours_worked/hours|num|hours in the period", "pay_date/payment_date|date|day paid"],
    "InsuranceClaim": ["claim_number/claim_id|id|claim reference", "policy_number|id|policy",
                       "policyholder/insured_name|person|the insured", "insurer/insurance_company|company|insurer",
                       "incident_date/date_of_loss|date|when it happened", "reported_date|date|when reported",
                       "claim_type|enum:theft,water_damage,fire,accident,other|kind of claim",
                       "claimed_amount/amount_claimed|money|amount claimed", "description|text|what happened",
                       "police_report/police_report_filed|bool|police report filed", "witnesses|list:person|witnesses"],
    "LabReport": ["patient/patient_name|person|the patient", "lab/laboratory|company|testing laboratory",
                  "collected_at/sample_collected|datetime|sample collection time", "tests/results|items:LabTest|tests",
                  "physician/ordering_doctor|person|requesting doctor", "report_id/accession_number|id|report ID"],
    "ProductSpec": ["product_name/name|product|product", "manufacturer/brand|company|maker",
                    "model_number/sku|id|model", "weight_kg/weight|num|weight in kg", "price/list_price|money|price",
                    "colors/colours|list:str|available colours", "warranty_years|int|warranty in years",
                    "in_stock/available|bool|in stock", "release_date|date|release date",
                    "dimensions/size|obj:Dimensions|outer dimensions"],
    "JobApplication": ["applicant/candidate_name|person|the applicant", "email/applicant_email|email|e-mail",
                       "phone/mobile|phone|phone", "position/role_applied_for|jobtitle|job applied for",
                       "applied_on/application_date|date|date applied", "years_experience|int|years of experience",
                       "expected_salary|money|salary expectation", "willing_to_relocate|bool|relocation",
                       "languages|list:skill|languages spoken", "references|items:Reference|referees"],
    "ConferenceTalk": ["title/talk_title|headline|talk title", "speaker/speaker_name|person|presenter",
                       "affiliation/organization|company|speaker's organisation", "date/talk_date|date|day",
                       "start_time/starts_at|time|start", "end_time/ends_at|time|end", "room/venue|place|room",
                       "track|enum:research,industry,tutorial,keynote|track", "duration_minutes|int|length",
                       "co_speakers|list:person|other speakers", "recorded|bool|will be recorded"],
    "RestaurantReservation": ["guest_name/name|person|reservation name", "restaurant|company|restaurant",
                              "date/reservation_date|date|day", "time/reservation_time|time|time",
                              "party_size/covers|int|number of people", "phone|phone|contact phone",
                              "occasion|enum:birthday,anniversary,business,none|occasion",
                              "outdoor_seating/terrace|bool|outside table", "deposit|money|deposit paid",
                              "notes/remarks|text|notes"],
    "UtilityBill": ["account_number|id|customer account", "customer_name/account_holder|person|account holder",
                    "provider/supplier|company|energy supplier", "service_address|address|supply address",
                    "period_start/billing_start|date|start of period", "period_end/billing_end|date|end of period",
                    "usage_kwh/consumption|num|energy used in kWh", "amount_due/total_due|money|to pay",
                    "due_date/pay_by|date|payment deadline", "direct_debit|bool|paid by direct debit"],
    "GymMembership": ["member_name/member|person|member", "member_id/membership_number|id|membership number",
                      "gym/club|company|gym", "plan/membership_type|enum:monthly,annual,off_peak,student|plan",
                      "start_date|date|start", "end_date/expiry_date|date|end", "monthly_fee|money|fee",
                      "includes_classes|bool|classes included", "email|email|member e-mail"],
    "TaxForm": ["taxpayer/taxpayer_name|person|taxpayer", "tax_id/tin|code:^[A-Z]{2}[0-9]{7,9}$|tax number",
                "tax_year|int:2000:2030|tax year", "filing_status|enum:single,married_joint,married_separate,head_of_household|status",
                "gross_income/total_income|money|income", "deductions|money|deductions", "tax_due/tax_owed|money|tax owed",
                "refund/refund_amount|money|refund", "employer|company|main employer", "address|address|home address"],
    "MeetingMinutes": ["meeting_title/title|headline|meeting", "date/meeting_date|date|day",
                       "chair/chairperson|person|chair", "attendees/participants|list:person|who attended",
                       "location|place|where", "decisions|list:text|decisions taken",
                       "action_items/actions|items:ActionItem|follow-ups", "next_meeting|date|next meeting"],
    "CourseEnrollment": ["student/student_name|person|student", "student_id|id|student number",
                         "course_title/course|headline|course", "course_code|code:^[A-Z]{3}[0-9]{3}$|code",
                         "semester/term|enum:spring,summer,fall,winter|term", "credits|int:1:10|credits",
                         "instructor/lecturer|person|teacher", "start_date|date|first class", "fee/tuition|money|fee",
                         "online|bool|taught online"],
    "ExpenseReport": ["employee/submitted_by|person|claimant", "report_date/submitted_on|date|submission date",
                      "expenses/lines|items:Expense|expense lines", "total/total_amount|money|sum claimed",
                      "currency|currency|currency", "approved|bool|approved", "approver/approved_by|person|approver"],
    "EventTicket": ["event/event_name|headline|event", "venue|place|venue", "starts_at/date_time|datetime|doors",
                    "ticket_holder/attendee|person|name on ticket", "seat|code:^[A-Z][0-9]{1,3}$|seat",
                    "price/ticket_price|money|price", "order_number|id|order", "quantity/tickets|int|tickets"],
    "DonationReceipt": ["donor/donor_name|person|donor", "charity/organization|company|charity",
                        "amount/donation_amount|money|amount given", "donation_date/date|date|date",
                        "receipt_number|id|receipt", "recurring/monthly|bool|recurring gift",
                        "tax_deductible|bool|deductible", "campaign|headline|appeal", "payer|obj:Payer|who paid"],
    "LoanApplication": ["applicant/applicant_name|person|applicant", "loan_amount/amount_requested|money|amount",
                        "term_months/term|int:6:360|term in months", "interest_rate/apr|percent|rate in %",
                        "purpose|enum:home,education,business,personal|purpose", "employer|company|employer",
                        "annual_income/income|money|yearly income", "application_date|date|applied on"],
    "SoftwareSubscription": ["customer/customer_name|company|customer", "plan|enum:free,starter,pro,enterprise|plan",
                             "seats/licenses|int:1:500|seats", "period_start|date|start", "period_end|date|end",
                             "amount/total|money|charged", "currency|currency|currency", "invoice_id|id|invoice",
                             "auto_renew|bool|renews automatically", "billing_email|email|billing contact"],
}
_STR_LEN = {"person": 80, "company": 120, "party": 120, "address": 200, "city": 80, "place": 120,
            "email": 100, "phone": 30, "id": 40, "iban": 34, "text": 300, "headline": 120, "jobtitle": 100,
            "product": 120, "skill": 40, "str": 60}


def random_schemas(n: int, *, seed: int = 0) -> list[dict[str, Any]]:
    """`n` varied object schemas (2-10 fields each), all supported by the decoder's grammar."""
    rng = random.Random(f"schemas/{seed}")
    domains = sorted(_DOMAINS)
    return [_schema(rng.choice(domains), random.Random(f"schemas/{seed}/{i}")) for i in range(n)]


def _schema(domain: str, rng: random.Random) -> dict[str, Any]:
    camel = rng.random() < 0.35
    specs = _DOMAINS[domain]
    k = rng.randint(min(2, len(specs)), min(10, len(specs)))
    chosen = sorted(rng.sample(range(len(specs)), k))
    schema: dict[str, Any] = {"title": domain, "type": "object", "properties": {}, "required": []}
    defs: dict[str, Any] = {}
    for idx in chosen:
        name, sub, required = _field(specs[idx], rng, camel, defs)
        schema["properties"][name] = sub
        if required:
            schema["required"].append(name)
    if defs:
        schema["$defs"] = defs
    return schema


def _field(spec: str, rng: random.Random, camel: bool, defs: dict[str, Any]) -> tuple[str, dict, bool]:
    names, kind, desc = spec.split("|")
    name = rng.choice(names.split("/"))
    if camel:
        head, *rest = name.split("_")
        name = head + "".join(w.capitalize() for w in rest)
    s = _type(kind, rng, camel, defs)
    if rng.random() < 0.85:
        s["description"] = desc
    required = rng.random() < 0.45
    if not required:  # optional means nullable: null is how the model says "not in the text"
        s = {"anyOf": [s, {"type": "null"}]} if "$ref" in s or rng.random() < 0.6 else _type_list(s)
    return name, s, required


def _type_list(s: dict[str, Any]) -> dict[str, Any]:
    if isinstance(s.get("type"), str) and "enum" not in s:
        return {**s, "type": [s["type"], "null"]}
    return {"anyOf": [s, {"type": "null"}]}


def _type(kind: str, rng: random.Random, camel: bool, defs: dict[str, Any]) -> dict[str, Any]:
    base, _, arg = kind.partition(":")
    if base in _STR_LEN:
        return {"type": "string", "maxLength": _STR_LEN[base] + rng.choice([0, 0, 20, -10])}
    if base == "code":
        return {"type": "string", "pattern": arg}
    if base == "currency":
        return {"type": "string", "pattern": "^[A-Z]{3}$"}
    if base in ("date", "time"):
        return {"type": "string", "format": base}
    if base == "datetime":
        return {"type": "string", "format": "date-time"}
    if base == "money":
        out: dict[str, Any] = {"type": "number", "x-decimal": {"max_digits": rng.choice([10, 12]), "decimal_places": 2}}
        return {**out, "minimum": 0} if rng.random() < 0.4 else out
    if base == "int":
        lo, hi = (arg.split(":") + [None])[:2] if arg else (0, None)
        out = {"type": "integer", "minimum": int(lo)}
        return {**out, "maximum": int(hi)} if hi else out
    if base == "num":
        return {"type": "number", "minimum": 0}
    if base == "percent":
        return {"type": "number", "minimum": 0, "maximum": 100}
    if base == "bool":
        return {"type": "boolean"}
    if base == "enum":
        return {"type": "string", "enum": arg.split(",")}
    if base == "list":
        return {"type": "array", "items": _type(arg, rng, camel, defs), "maxItems": rng.choice([5, 8, 10, 20])}
    if base in ("items", "obj"):
        sub = {"title": arg, "type": "object", "properties": {}, "required": []}
        for spec in _SUB[arg]:
            name, field_s, required = _field(spec, rng, camel, defs)
            sub["properties"][name] = field_s
            if required:
                sub["required"].append(name)
        if rng.random() < 0.5:  # as Pydantic writes it: a $ref into $defs
            defs[arg] = sub
            sub = {"$ref": f"#/$defs/{arg}"}
        return {"type": "array", "items": sub, "maxItems": rng.choice([10, 20, 30])} if base == "items" \
            else copy.deepcopy(sub)
    raise ValueError(f"unknown field type {kind!r} in a domain spec")
