-- Open amount per debtor, currency and aging bucket (amounts never mix currencies).
select
    {{ dbt.hash(dbt.concat([
        "debtor_id", "'|'", "currency", "'|'", "aging_bucket"
    ])) }} as aging_id,
    debtor_id,
    debtor_name,
    currency,
    aging_bucket,
    aging_bucket_order,
    count(*) as open_receivables,
    sum(amount_cents) as open_amount_cents,
    {{ cents_to_units('sum(amount_cents)') }} as open_amount
from {{ ref('receivables_current') }}
where is_open
group by debtor_id, debtor_name, currency, aging_bucket, aging_bucket_order
