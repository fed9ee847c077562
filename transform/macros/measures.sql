{#- Fractional days from one timestamp to another, on every adapter (dbt's datediff in
    seconds, divided: whole days would round a 36-hour approval down to 1). -#}
{% macro days_between(start, end) -%}
    cast({{ dbt.datediff(start, end, 'second') }} as double precision) / 86400
{%- endmacro %}

{#- The day the models are "as of": the build date, or --vars '{as_of_date: 2026-06-01}'. -#}
{% macro as_of_date() -%}
    {%- if var('as_of_date', none) -%}
        cast('{{ var("as_of_date") }}' as date)
    {%- else -%}
        current_date
    {%- endif -%}
{%- endmacro %}

{#- The instant current spells are measured to: the build time, or the end of as_of_date. -#}
{% macro as_of_timestamp() -%}
    {%- if var('as_of_date', none) -%}
        cast('{{ var("as_of_date") }} 23:59:59' as {{ dbt.type_timestamp() }})
    {%- else -%}
        cast({{ dbt.current_timestamp() }} as {{ dbt.type_timestamp() }})
    {%- endif -%}
{%- endmacro %}

{#- Minor units (cents) to major units, exactly: decimal(20, 2) on every adapter. -#}
{% macro cents_to_units(cents) -%}
    cast(({{ cents }}) / 100.0 as decimal(20, 2))
{%- endmacro %}
