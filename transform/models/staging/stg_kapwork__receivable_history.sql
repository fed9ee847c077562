-- One row per field change, values as text, with a key of our own: the loaders' key may or
-- may not include a change hash, so history_id hashes everything that tells changes apart.
{%- set relation = source('kapwork', 'receivable_history') %}

with source as (

    select
        receivable_id,
        cast(changed_at as {{ dbt.type_timestamp() }}) as changed_at,
        field,
        {{ history_value(relation, 'from_value') }} as from_value,
        {{ history_value(relation, 'to_value') }} as to_value
    from {{ relation }}

)

select
    {{ dbt.hash(dbt.concat([
        "receivable_id", "'|'",
        "cast(changed_at as " ~ dbt.type_string() ~ ")", "'|'",
        "field", "'|'",
        "coalesce(from_value, '<null>')", "'|'",
        "coalesce(to_value, '<null>')",
    ])) }} as history_id,
    receivable_id,
    changed_at,
    field,
    from_value,
    to_value
from source
