-- Spells of a receivable are contiguous and do not overlap: each starts where the previous
-- one left off, only the last one is open, the first starts at (or before) detection, and
-- none ends before it starts. Returns the offending spells.
with spells as (

    select
        spells.*,
        lag(left_at) over (partition by receivable_id order by spell_number) as previous_left_at,
        lead(spell_number) over (partition by receivable_id order by spell_number) as next_number
    from {{ ref('receivable_status_spells') }} as spells

)

select spells.*
from spells
inner join {{ ref('stg_kapwork__receivables') }} as receivables
    on receivables.receivable_id = spells.receivable_id
where (spell_number > 1 and (previous_left_at is null or previous_left_at <> entered_at))
    or (spell_number = 1 and entered_at > receivables.detected_at)
    or (left_at is null and next_number is not null)
    or (left_at is not null and next_number is null)
    or left_at < entered_at
