-- One row per receivable: typed, with vendor and debtor ids and names as columns.
with source as (

    select * from {{ source('kapwork', 'receivables') }}

)

select
    id as receivable_id,
    vendor_receivable_id,
    {{ json_text('vendor', 'id') }} as vendor_id,
    {{ json_text('vendor', 'name') }} as vendor_name,
    {{ json_text('debtor', 'id') }} as debtor_id,
    {{ json_text('debtor', 'name') }} as debtor_name,
    amount_cents,
    upper(currency) as currency,
    cast(receivable_date as date) as receivable_date,
    cast(due_date as date) as due_date,
    status,
    portal_status,
    po_number,
    cast(detected_at as {{ dbt.type_timestamp() }}) as detected_at,
    cast(updated_at as {{ dbt.type_timestamp() }}) as updated_at,
    cast(estimated_next_update_at as {{ dbt.type_timestamp() }}) as estimated_next_update_at
from source
