-- Per debtor and currency: what is open and paid, how long approval and payment take
-- (days from detection to the first APPROVED / PAID), how often invoices get disputed.
with receivables as (

    select * from {{ ref('receivables_current') }}

),

milestones as (

    select
        receivable_id,
        min(case when status = 'APPROVED' then entered_at end) as first_approved_at,
        min(case when status = 'PAID' then entered_at end) as first_paid_at,
        max(case when status = 'DISPUTED' then 1 else 0 end) as was_disputed
    from {{ ref('receivable_status_spells') }}
    group by receivable_id

),

timed as (

    select
        receivables.debtor_id,
        receivables.debtor_name,
        receivables.currency,
        receivables.amount_cents,
        receivables.status,
        receivables.is_open,
        milestones.was_disputed,
        {{ days_between('receivables.detected_at', 'milestones.first_approved_at') }}
            as days_to_approved,
        {{ days_between('receivables.detected_at', 'milestones.first_paid_at') }}
            as days_to_paid
    from receivables
    inner join milestones on milestones.receivable_id = receivables.receivable_id

)

select
    {{ dbt.hash(dbt.concat(["debtor_id", "'|'", "currency"])) }} as debtor_currency_id,
    debtor_id,
    max(debtor_name) as debtor_name,
    currency,
    count(*) as receivables,
    sum(case when is_open then 1 else 0 end) as open_receivables,
    {{ cents_to_units('sum(case when is_open then amount_cents else 0 end)') }} as open_amount,
    sum(case when status = 'PAID' then 1 else 0 end) as paid_receivables,
    {{ cents_to_units("sum(case when status = 'PAID' then amount_cents else 0 end)") }}
        as paid_amount,
    {{ percentile('days_to_approved', 0.5) }} as median_days_to_approved,
    {{ percentile('days_to_approved', 0.9) }} as p90_days_to_approved,
    {{ percentile('days_to_paid', 0.5) }} as median_days_to_paid,
    {{ percentile('days_to_paid', 0.9) }} as p90_days_to_paid,
    cast(sum(was_disputed) as double precision) / count(*) as share_ever_disputed
from timed
group by debtor_id, currency
