-- One row per status transition. Changes at the same instant are put in a fixed order: a
-- change that continues from the previous one's status first, then by the values.
with history as (

    select * from {{ ref('stg_kapwork__receivable_history') }}
    where field = 'status'

)

select
    history_id as status_change_id,
    receivable_id,
    changed_at,
    from_value as from_status,
    to_value as to_status,
    row_number() over (
        partition by receivable_id
        order by changed_at, from_value, to_value, history_id
    ) as change_number
from history
