-- Every receivable as it is now, with how far past due the open ones are.
{%- set closed = var('closed_statuses', ['PAID', 'SOLD']) %}

with receivables as (

    select * from {{ ref('stg_kapwork__receivables') }}

),

last_changes as (

    select receivable_id, max(changed_at) as status_changed_at
    from {{ ref('receivable_status_changes') }}
    group by receivable_id

),

aged as (

    select
        receivables.*,
        status not in ('{{ closed | join("', '") }}') as is_open,
        {{ dbt.datediff('receivables.due_date', as_of_date(), 'day') }} as days_past_due,
        coalesce(last_changes.status_changed_at, receivables.detected_at) as status_since
    from receivables
    left join last_changes on last_changes.receivable_id = receivables.receivable_id

)

select
    receivable_id,
    vendor_receivable_id,
    vendor_id,
    vendor_name,
    debtor_id,
    debtor_name,
    amount_cents,
    {{ cents_to_units('amount_cents') }} as amount,
    currency,
    receivable_date,
    due_date,
    status,
    portal_status,
    po_number,
    detected_at,
    updated_at,
    status_since,
    is_open,
    days_past_due,
    case
        when not is_open then null
        when due_date is null then 'no due date'
        when days_past_due <= 0 then 'not yet due'
        when days_past_due <= 30 then '1-30'
        when days_past_due <= 60 then '31-60'
        when days_past_due <= 90 then '61-90'
        else 'over 90'
    end as aging_bucket,
    case
        when not is_open then null
        when due_date is null then 6
        when days_past_due <= 0 then 1
        when days_past_due <= 30 then 2
        when days_past_due <= 60 then 3
        when days_past_due <= 90 then 4
        else 5
    end as aging_bucket_order
from aged
