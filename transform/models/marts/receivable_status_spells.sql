-- One row per stretch of time a receivable spent in one status. The first spell starts at
-- detection, each status change ends one spell and starts the next; the current one has no
-- left_at. Spells of one receivable are contiguous and do not overlap.
with receivables as (

    select receivable_id, status, detected_at
    from {{ ref('stg_kapwork__receivables') }}

),

changes as (

    select changes.*
    from {{ ref('receivable_status_changes') }} as changes
    inner join receivables on receivables.receivable_id = changes.receivable_id

),

first_changes as (

    select receivable_id, from_status, changed_at
    from changes
    where change_number = 1

),

starts as (

    -- The status it was detected in: what the first change left (else its status now).
    select
        receivables.receivable_id,
        1 as spell_number,
        coalesce(first_changes.from_status, receivables.status) as status,
        case
            when first_changes.changed_at < receivables.detected_at
                then first_changes.changed_at
            else receivables.detected_at
        end as entered_at
    from receivables
    left join first_changes on first_changes.receivable_id = receivables.receivable_id

    union all

    select
        receivable_id,
        change_number + 1 as spell_number,
        to_status as status,
        changed_at as entered_at
    from changes

),

spells as (

    select
        receivable_id,
        spell_number,
        status,
        entered_at,
        lead(entered_at) over (
            partition by receivable_id order by spell_number
        ) as left_at
    from starts

)

select
    {{ dbt.hash(dbt.concat(["receivable_id", "'|'", "cast(spell_number as " ~ dbt.type_string() ~ ")"])) }}
        as spell_id,
    receivable_id,
    spell_number,
    status,
    entered_at,
    left_at,
    left_at is null as is_current,
    {{ days_between('entered_at', 'coalesce(left_at, ' ~ as_of_timestamp() ~ ')') }}
        as duration_days
from spells
